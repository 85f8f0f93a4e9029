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


def text_metric_info(description: str, inputs_description: str, *, references: bool, citation: str = ""):
    """The `MetricInfo` every module here declares: text predictions, and text references when the metric
    compares replies with them (other inputs are keywords that `evaluate` passes through to `_compute`)."""
    import datasets
    import evaluate

    features = {"predictions": datasets.Value("string")}
    if references:
        features["references"] = datasets.Value("string")
    return evaluate.MetricInfo(description=description, citation=citation,
                               inputs_description=inputs_description, features=datasets.Features(features))
