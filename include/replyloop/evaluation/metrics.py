"""Metric modules in the `evaluate` format, shipped in the repo and loaded by path (no hub, no network)."""

from __future__ import annotations

import functools
import os

from replyloop.resources import METRICS


@functools.cache
def load_metric(name: str):
    """The `evaluate` module `resources/metrics/<name>/<name>.py`."""
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate

    path = METRICS / name
    if not (path / f"{name}.py").exists():
        raise FileNotFoundError(f"metric module {path / (name + '.py')} is missing")
    return evaluate.load(str(path))
