"""What a training run reads: the dataset content hash, the snapshot of the triggering event, readiness."""

from __future__ import annotations

import pandas as pd

from replyloop.training.data import content_hash
from replyloop.training.readiness import snapshot_to_train

MESSAGES = pd.DataFrame([
    {"conversation_id": "c1", "turn": 0, "message_id": "m1", "role": "customer", "author_id": "u", "text": "Hi",
     "split": "train"},
    {"conversation_id": "c1", "turn": 1, "message_id": "m2", "role": "agent", "author_id": "a", "text": "Hello",
     "split": "train"}])
FEEDBACK = pd.DataFrame([{"conversation_id": "c1", "message_id": "m2", "rating": "down", "correction": "Hello!",
                          "created_at": "2026-11-20T00:00:00Z"}])


def test_dataset_hash_covers_texts_and_corrections():
    base = content_hash(MESSAGES, FEEDBACK)
    assert content_hash(MESSAGES.iloc[::-1], FEEDBACK) == base, "row order does not matter"
    assert content_hash(MESSAGES.assign(text=["Hi", "Hello."]), FEEDBACK) != base
    assert content_hash(MESSAGES, FEEDBACK.assign(correction=["Hello there!"])) != base
    assert content_hash(MESSAGES, FEEDBACK.iloc[:0]) != base


def test_snapshot_comes_from_the_triggering_event_unless_a_param_names_one():
    assert snapshot_to_train({}, [{"snapshot_id": "s1", "counts": {}}, {"snapshot_id": "s2"}]) == "s2"
    assert snapshot_to_train({"snapshot_id": "s0"}, [{"snapshot_id": "s2"}]) == "s0"
    assert snapshot_to_train({"snapshot_id": None}, []) is None, "a manual run without Params trains CURRENT"

