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



def _lake(tmp_path, days: int):
    from datetime import date

    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.settings import get_settings

    settings = get_settings().model_copy(update={"lake_uri": str(tmp_path / "lake")})
    files: dict[str, bytes] = {}
    generate_landing(files.__setitem__, start_date=date(2026, 10, 1), days=2, conversations_per_day=150, seed=3)
    lake = open_lake(settings.lake)
    for day in range(days):
        for path, data in files.items():
            if f"dt=2026-10-0{day + 1}" in path:
                lake.write_bytes(path, data)
        run_ingest(settings)
    return settings


def test_training_validation_and_gate_held_out_splits_are_disjoint_and_stable(tmp_path):
    """Three splits by conversation id: training, training's validation (checkpoint selection) and the gate's
    held-out set; none shares a conversation, and a day more of data moves none of them."""
    from replyloop.evaluation.sets import heldout_set
    from replyloop.training.data import load_training_data

    splits = []
    for days in (1, 2):
        settings = _lake(tmp_path / f"d{days}", days)
        data = load_training_data(settings, None, validation_fraction=0.15)
        gate = {it.id for it in heldout_set(settings.model_copy(update={"heldout_cap": 10_000}), None).items}
        train = {c["conversation_id"] for c in data.train}
        validation = {c["conversation_id"] for c in data.validation}
        assert train and validation and gate
        assert not train & validation and not train & gate and not validation & gate
        assert data.split_stats["validation_conversations"] == len(validation)
        assert 0.08 < len(validation) / (len(train) + len(validation)) < 0.22
        splits.append((train, validation, gate))
    (train1, val1, gate1), (train2, val2, gate2) = splits
    assert val1 < val2 and train1 < train2 and gate1 < gate2, "day 2 only adds to each split"


def test_conversations_matching_an_evaluation_prompt_never_reach_training_or_validation():
    from replyloop.resources import protected_prompts
    from replyloop.training.data import split_validation

    golden = protected_prompts()[0]
    convs = [{"conversation_id": f"c{i}", "turns": [{"role": "customer", "text": text},
                                                    {"role": "agent", "text": "Thanks, DM us."}]}
             for i, text in enumerate([golden, "Where is my parcel? It was due on Monday.", golden.upper()])]
    train, validation, stats = split_validation(convs, 0.5, protected_prompts())
    assert [c["conversation_id"] for c in train + validation] == ["c1"]
    assert stats == {"train_conversations": len(train), "validation_conversations": len(validation),
                     "contaminated_dropped": 2}
