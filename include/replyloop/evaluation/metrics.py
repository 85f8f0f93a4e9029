"""Metrics through `evaluate` modules shipped in the repo (loaded by path: no hub, no network)."""

from __future__ import annotations

import functools
import os

from replyloop.resources import METRICS


@functools.cache
def load_metric(name: str):
    """An `evaluate` module from `resources/metrics/<name>/<name>.py`."""
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import evaluate

    path = METRICS / name
    if not (path / f"{name}.py").exists():
        raise FileNotFoundError(f"metric module {path / (name + '.py')} is missing")
    return evaluate.load(str(path))


def quality(predictions: list[str], references: list[str]) -> dict[str, float]:
    if not predictions:
        return {"rougeL": 0.0, "rouge1": 0.0, "chrf": 0.0}
    rouge = load_metric("rouge").compute(predictions=predictions, references=references)
    chrf = load_metric("chrf").compute(predictions=predictions, references=references)
    return {"rougeL": rouge["rougeL"], "rouge1": rouge["rouge1"], "chrf": chrf["score"]}


def pii_leaks(predictions: list[str]) -> dict:
    return load_metric("pii_leak").compute(predictions=predictions)


def safety(predictions: list[str]) -> dict:
    return load_metric("safety").compute(predictions=predictions)
