"""SFT examples: chat template of the base model, loss on agent turns only, feedback applied."""

from __future__ import annotations

import pandas as pd
import pytest

from replyloop.training.examples import IGNORE, build_examples, conversations, prompts_and_references, render


def frame(rows):
    cols = ["conversation_id", "turn", "message_id", "role", "text", "split"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


MESSAGES = frame([
    ("c1", 0, "m1", "customer", "Where is my parcel?", "train"),
    ("c1", 1, "m2", "agent", "Sorry! DM us your order number.", "train"),
    ("c1", 2, "m3", "customer", "Done.", "train"),
    ("c1", 3, "m4", "agent", "Thanks, it ships today.", "train"),
    ("c2", 0, "m5", "customer", "Refund please", "eval"),
    ("c2", 1, "m6", "agent", "whatever", "eval"),
])
FEEDBACK = pd.DataFrame([
    {"conversation_id": "c1", "message_id": "m2", "rating": "down", "correction": "Sorry about the wait! Please DM us.",
     "created_at": "2026-11-20T10:00:00Z"},
    {"conversation_id": "c1", "message_id": "m4", "rating": "down", "correction": None, "created_at": "2026-11-20T10:00:00Z"},
    {"conversation_id": "c2", "message_id": "m6", "rating": "up", "correction": float("nan"), "created_at": "2026-11-20T10:00:00Z"},
])


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


def test_feedback_replaces_and_drops():
    convs, stats = conversations(MESSAGES, FEEDBACK, "train")
    turns = convs[0]["turns"]
    assert turns[1]["text"] == "Sorry about the wait! Please DM us." and turns[1]["train"]
    assert turns[3]["text"] == "Thanks, it ships today." and not turns[3]["train"]
    assert stats == {"corrected": 1, "dropped_from_loss": 1, "upvoted": 0}
    eval_convs, eval_stats = conversations(MESSAGES, FEEDBACK, "eval")
    assert eval_convs[0]["turns"][1] == {"role": "agent", "text": "whatever", "train": True}
    assert eval_stats["upvoted"] == 1


def test_loss_only_on_trainable_agent_turns(tok):
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    ex = render(tok, "You are Acme's agent.", convs[0], max_len=512)
    labelled = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])
    assert "Sorry about the wait! Please DM us." in labelled
    assert "Where is my parcel" not in labelled and "Done." not in labelled, "customer turns must not be trained"
    assert "ships today" not in labelled, "a down-voted reply without correction is context only"
    assert "You are Acme" not in labelled
    full = tok.decode(ex.input_ids)
    assert full.startswith("<|im_start|>system\nYou are Acme's agent.") and "<|im_start|>assistant" in full


def test_truncation_and_nothing_to_learn(tok):
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    full = render(tok, "sys", convs[0], max_len=512)
    cut = render(tok, "sys", convs[0], max_len=len(full.input_ids) - 5)
    assert cut.input_ids == full.input_ids[:-5] and cut.labels == full.labels[:-5]
    assert render(tok, "sys", convs[0], max_len=20) is None, "cut before any agent token: nothing to learn"
    only_dropped = {"conversation_id": "x", "turns": [{"role": "customer", "text": "hi", "train": False},
                                                      {"role": "agent", "text": "no", "train": False}]}
    assert render(tok, "sys", only_dropped, max_len=64) is None
    assert len(build_examples(tok, "sys", convs + [only_dropped], 512)) == 1


def test_prompts_and_references_stop_before_the_reply():
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    [(context, reference)] = prompts_and_references(convs, 10)
    assert context == [{"role": "customer", "text": "Where is my parcel?"}]
    assert reference == "Sorry about the wait! Please DM us."
