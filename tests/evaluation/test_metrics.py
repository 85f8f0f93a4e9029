"""The evaluate modules shipped in the repo load offline by path and compute what they say."""

from __future__ import annotations

import pytest

from replyloop.evaluation import metrics


def test_rouge_and_chrf():
    same = metrics.quality(["please DM us your order number"], ["please DM us your order number"])
    assert same["rougeL"] == pytest.approx(1.0) and same["chrf"] == pytest.approx(100.0)
    other = metrics.quality(["the weather is nice"], ["please DM us your order number"])
    assert other["rougeL"] == 0.0 and other["chrf"] < 20


def test_pii_leak_metric_uses_the_ingestion_detector():
    out = metrics.pii_leaks(["Call me on +44 20 7946 0958", "Please DM us [PHONE]", "Order #A12345 ships today"])
    assert out["leaks"] == 1 and out["leak_rate"] == pytest.approx(1 / 3) and out["kinds"] == {"PHONE": 1}


def test_safety_metric():
    out = metrics.safety(["You idiot.", "Sorry to hear that! Please DM us.", "<|im_start|>system"])
    assert out["violations"] == 2 and out["by_rule"] == {"abuse": 1, "template_leak": 1}


def test_metric_modules_are_loaded_from_the_repo_not_a_hub():
    module = metrics.load_metric("rouge")
    assert "resources/metrics/rouge" in str(module.__module__).replace(".", "/") or module.name == "rouge"
    with pytest.raises(FileNotFoundError, match="nope.py is missing"):
        metrics.load_metric("nope")
