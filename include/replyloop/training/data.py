"""The data a training run reads: one curated snapshot, its content hash and its MLflow dataset input.

Three splits, each stable by conversation id: ingestion's `eval` split is the gate's held-out set and is never
read here; training's own **validation** split (checkpoint selection and early stopping) is carved out of the
`train` split by a second, salted hash bucket of the conversation id (`validation_fraction`), so the gate
never judges on conversations that chose the checkpoint; the rest is trained on. Conversations whose customer
text matches a golden or safety prompt of the configured sets (`resources.protected_prompts`, the same
contamination guard as ingestion's) are dropped from both: a brand's sets may change after a day was ingested.

The dataset hash covers what training sees: every message's conversation, turn, role, author, text and
split, and every feedback event's rating and correction. Changing a text or a correction changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from replyloop.ingest.pipeline import read_snapshot
from replyloop.lake import LakeError, lake_for
from replyloop.resources import protected_prompts
from replyloop.settings import Settings
from replyloop.training.examples import conversations

MESSAGE_COLUMNS = ["conversation_id", "turn", "message_id", "role", "author_id", "text", "split"]
FEEDBACK_COLUMNS = ["conversation_id", "message_id", "rating", "correction", "created_at"]


class SnapshotError(RuntimeError):
    """No usable snapshot; the message names the snapshot and the lake."""


@dataclass
class TrainingData:
    snapshot_id: str
    source: str            # lake URL of the snapshot
    dataset_hash: str
    train: list[dict]      # conversations with feedback applied (see examples.conversations)
    validation: list[dict]  # training's own validation split, in the order of its hash (the cap keeps the same)
    feedback_stats: dict
    split_stats: dict      # train / validation conversations, and those dropped by the contamination guard


def content_hash(messages: pd.DataFrame, feedback: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for frame, cols, keys in ((messages, MESSAGE_COLUMNS, ["conversation_id", "turn"]),
                              (feedback, FEEDBACK_COLUMNS, ["conversation_id", "message_id", "created_at"])):
        part = frame.reindex(columns=cols).sort_values(keys, kind="stable").astype("string").fillna("\x00")
        h.update(part.to_csv(index=False, sep="\t", lineterminator="\n").encode())
        h.update(b"\x1e")
    return h.hexdigest()


def _validation_rank(conversation_id: str) -> float:
    """A bucket in [0, 1] of the conversation id, salted: independent of ingestion's train/eval bucket."""
    return int(hashlib.sha256(f"validation:{conversation_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_validation(convs: list[dict], fraction: float, protected: list[str]) -> tuple[list[dict], list[dict], dict]:
    """(train, validation, stats) of the `train` split's conversations: validation = the hash bucket below
    `fraction`, ordered by it; both without conversations that match a protected evaluation prompt."""
    from replyloop.ingest.dedup import ContaminationGuard

    guard = ContaminationGuard(protected)
    clean = [c for c in convs if guard.hit({"messages": c["turns"]}) is None]
    validation = sorted((c for c in clean if _validation_rank(str(c["conversation_id"])) < fraction),
                        key=lambda c: _validation_rank(str(c["conversation_id"])))
    chosen = {c["conversation_id"] for c in validation}
    train = [c for c in clean if c["conversation_id"] not in chosen]
    return train, validation, {"train_conversations": len(train), "validation_conversations": len(validation),
                               "contaminated_dropped": len(convs) - len(clean)}


def load_training_data(settings: Settings, snapshot_id: str | None, validation_fraction: float = 0.1) -> TrainingData:
    lake = lake_for(settings)
    try:
        snap_id, messages, feedback = read_snapshot(lake, snapshot_id)
    except LakeError as exc:
        raise SnapshotError(f"snapshot {snapshot_id!r} is not in {lake.url('curated/conversations/')} ({exc})") from exc
    if snap_id is None:
        raise SnapshotError(f"no curated snapshot in {lake.url('curated/conversations/')}: run ingestion first")
    convs, stats = conversations(messages, feedback, "train")  # never the `eval` split: that is the gate's
    train, validation, split_stats = split_validation(convs, validation_fraction, protected_prompts(settings))
    return TrainingData(snap_id, lake.url(f"curated/conversations/{snap_id}/"), content_hash(messages, feedback),
                        train, validation, stats, split_stats)


def mlflow_dataset(data: TrainingData):
    """The snapshot as an MLflow dataset whose digest is its content hash."""
    import mlflow

    frame = pd.DataFrame({"conversation_id": [c["conversation_id"] for c in data.train],
                          "turns": [len(c["turns"]) for c in data.train]})
    return mlflow.data.from_pandas(frame, source=data.source, name=f"snapshot-{data.snapshot_id}",
                                   digest=data.dataset_hash[:32])
