"""The data a training run reads: one curated snapshot, its content hash and its MLflow dataset input.

The dataset hash covers what training sees: every message's conversation, turn, role, author, text and
split, and every feedback event's rating and correction. Changing a text or a correction changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from replyloop.ingest.pipeline import read_snapshot
from replyloop.lake import LakeError, lake_for
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
    held_out: list[dict]
    feedback_stats: dict


def content_hash(messages: pd.DataFrame, feedback: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for frame, cols, keys in ((messages, MESSAGE_COLUMNS, ["conversation_id", "turn"]),
                              (feedback, FEEDBACK_COLUMNS, ["conversation_id", "message_id", "created_at"])):
        part = frame.reindex(columns=cols).sort_values(keys, kind="stable").astype("string").fillna("\x00")
        h.update(part.to_csv(index=False, sep="\t", lineterminator="\n").encode())
        h.update(b"\x1e")
    return h.hexdigest()


def load_training_data(settings: Settings, snapshot_id: str | None) -> TrainingData:
    lake = lake_for(settings)
    try:
        snap_id, messages, feedback = read_snapshot(lake, snapshot_id)
    except LakeError as exc:
        raise SnapshotError(f"snapshot {snapshot_id!r} is not in {lake.url('curated/conversations/')} ({exc})") from exc
    if snap_id is None:
        raise SnapshotError(f"no curated snapshot in {lake.url('curated/conversations/')}: run ingestion first")
    train, stats = conversations(messages, feedback, "train")
    held_out, _ = conversations(messages, feedback, "eval")
    return TrainingData(snap_id, lake.url(f"curated/conversations/{snap_id}/"), content_hash(messages, feedback),
                        train, held_out, stats)


def mlflow_dataset(data: TrainingData):
    """The snapshot as an MLflow dataset whose digest is its content hash."""
    import mlflow

    frame = pd.DataFrame({"conversation_id": [c["conversation_id"] for c in data.train],
                          "turns": [len(c["turns"]) for c in data.train]})
    return mlflow.data.from_pandas(frame, source=data.source, name=f"snapshot-{data.snapshot_id}",
                                   digest=data.dataset_hash[:32])
