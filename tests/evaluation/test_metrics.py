"""The metric modules shipped in the repo load offline by path and score each reply."""

from __future__ import annotations

import pytest

from replyloop.evaluation.bootstrap import paired_interval
from replyloop.evaluation.metrics import load_metric


def test_token_f1_rouge_and_chrf_score_each_pair():
    preds = ["please DM us your order number", "the weather is nice", ""]
    refs = ["Please DM us your order number!", "please DM us your order number", "thanks"]
    f1 = load_metric("token_f1").compute(predictions=preds, references=refs)
    assert f1["scores"] == [1.0, 0.0, 0.0] and f1["token_f1"] == pytest.approx(1 / 3)
    rouge = load_metric("rouge").compute(predictions=preds, references=refs, rouge_types=["rougeL"])
    assert rouge["scores"]["rougeL"][0] == pytest.approx(1.0) and rouge["scores"]["rougeL"][1] == 0.0
    chrf = load_metric("chrf").compute(predictions=preds, references=refs)
    assert chrf["scores"][0] > 80 and chrf["scores"][1] < 20 and chrf["word_order"] == 2
    assert chrf["sentence_mean"] == pytest.approx(sum(chrf["scores"]) / 3)


def test_reply_length_flags_empty_long_and_looping_replies():
    out = load_metric("reply_length").compute(predictions=[
        "Sorry to hear that, please DM us.", "", "ok", "sorry " * 10, "word " * 100], min_words=2, max_words=80)
    assert out["scores"] == [1.0, 0.0, 0.0, 0.0, 0.0] and out["sane_rate"] == pytest.approx(0.2)


def test_pii_leak_flags_personal_data_per_reply():
    out = load_metric("pii_leak").compute(
        predictions=["Call me on +44 20 7946 0958", "Please DM us your order number", "Write to jane.doe@example.com"],
        prompts=[["hi"], ["where is my order"], ["help"]])
    assert out["scores"] == [1.0, 0.0, 1.0] and out["leaks"] == 2
    assert out["kinds"] == {"PHONE": 1, "EMAIL": 1}


def test_perplexity_of_references_given_prompts(tiny_learner_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_learner_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_learner_dir).eval()
    ctx = tok("<|im_start|>user\nwhere is my order<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    out = load_metric("perplexity").compute(predictions=["Please DM us.", "Sorry for the wait, DM us."],
                                            model=model, tokenizer=tok, contexts=[ctx["input_ids"]] * 2)
    assert len(out["scores"]) == 2 and out["tokens"] > 4
    assert out["perplexity"] == pytest.approx(2.718281828 ** out["mean_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="one prompt \\(contexts\\) per reference"):
        load_metric("perplexity").compute(predictions=["x"], model=model, tokenizer=tok, contexts=[])


def test_missing_metric_module_is_named():
    with pytest.raises(FileNotFoundError, match="metrics/nope/nope.py is missing"):
        load_metric("nope")


def test_paired_interval_is_oriented_and_reproducible():
    cand, base = [0.5, 0.6, 0.7, 0.4] * 10, [0.4, 0.5, 0.6, 0.3] * 10
    up = paired_interval(cand, base, higher_is_better=True, resamples=500, confidence=0.95, seed=1)
    assert up.delta == pytest.approx(0.1) and up.low == pytest.approx(0.1) and up.n == 40
    down = paired_interval(cand, base, higher_is_better=False, resamples=500, confidence=0.95, seed=1)
    assert down.delta == pytest.approx(-0.1)
    assert paired_interval(cand, base[::-1], higher_is_better=True, resamples=500, confidence=0.95, seed=1) == \
        paired_interval(cand, base[::-1], higher_is_better=True, resamples=500, confidence=0.95, seed=1)
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_interval([1.0], [1.0, 2.0], higher_is_better=True, resamples=100, confidence=0.9, seed=0)
