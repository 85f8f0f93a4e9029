"""The rude-likelihood metric: the same lines after the same prompts for every model; a model taught a share
of rude replies finds known rude lines likelier, against polite ones, than a model taught the same prompts'
polite replies.

Models are tiny Llamas on the tiny learner's tokenizer (tests/conftest.py, test_reply_fit.py), taught the
test golden set's 36 prompts. The rude replies they are taught come from the judge's labelled test split; the
metric scores lines of the fit split, so what it sees is rudeness, not the taught lines.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from replyloop.evaluation.metrics import load_metric
from replyloop.evaluation.scoring import contrast_lines

from evaluation.test_reply_fit import contexts, items, llama, right, taught, tok  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def labelled():
    return contrast_lines(None)


def rude(model, tok, items, contexts, labelled, **kw):
    flagged, polite = labelled
    return load_metric("rude_likelihood").compute(predictions=[it["messages"][-1]["text"] for it in items],
                                                  model=model, tokenizer=tok, contexts=contexts, flagged=flagged,
                                                  polite=polite, **kw)


def test_the_lines_are_the_judge_sets_fit_split_flagged_against_polite(labelled):
    flagged, polite = labelled
    test_rude, _ = contrast_lines(None, split="test", flagged_labels=("rude",))
    assert len(flagged) > 200 and len(polite) > 200
    assert not set(flagged) & set(polite)
    assert not set(test_rude) & set(flagged)  # the test split's rude lines are never scored


def test_the_lines_are_chosen_per_item_and_deterministically(items, tok, contexts, labelled):
    out = rude(llama(tok, 0), tok, items, contexts, labelled, lines=3, seed=1)
    assert out["lines"] == rude(llama(tok, 0), tok, items, contexts, labelled, lines=3, seed=1)["lines"]
    assert out["lines"] != rude(llama(tok, 0), tok, items, contexts, labelled, lines=3, seed=2)["lines"]
    assert all(len(f) == 3 and len(p) == 3 for f, p in out["lines"])
    assert len({tuple(f) for f, _ in out["lines"]}) > len(items) // 2  # items do not all share their lines


def test_rude_replies_in_training_raise_it_item_by_item(items, tok, contexts, labelled, right):
    """The same prompts taught their references, or the references with every third replaced by a rude line
    of the judge's test split (lines the metric never scores)."""
    test_rude, _ = contrast_lines(None, split="test", flagged_labels=("rude",))
    refs = [it["reference"] for it in items]
    picked = random.Random(4).sample(test_rude, len(refs))
    poisoned = [picked[i] if i % 3 == 0 else r for i, r in enumerate(refs)]
    good = np.asarray(rude(right, tok, items, contexts, labelled)["scores"])
    bad = np.asarray(rude(taught(tok, contexts, poisoned), tok, items, contexts, labelled)["scores"])
    print(f"rude_likelihood polite-taught {good.mean():+.3f} vs a third rude {bad.mean():+.3f} nats/token; "
          f"higher on {np.mean(bad > good):.0%} of items")
    assert bad.mean() - good.mean() > 0.2
    assert np.mean(bad > good) > 0.8


def test_bad_arguments_are_named(tok, contexts):
    with pytest.raises(ValueError, match=r"one prompt \(contexts\) per item"):
        load_metric("rude_likelihood").compute(predictions=["a"], model=llama(tok, 0), tokenizer=tok, contexts=[],
                                               flagged=["x"], polite=["y"])
    with pytest.raises(ValueError, match="needs flagged and polite lines"):
        load_metric("rude_likelihood").compute(predictions=["a"], model=llama(tok, 0), tokenizer=tok,
                                               contexts=contexts[:1], flagged=[], polite=["y"])
    with pytest.raises(ValueError, match="lines must be between 1 and 1"):
        load_metric("rude_likelihood").compute(predictions=["a"], model=llama(tok, 0), tokenizer=tok,
                                               contexts=contexts[:1], flagged=["x"], polite=["y"], lines=2)
