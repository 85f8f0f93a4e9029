"""Curated snapshots: immutable, content-addressed, one Parquet file per landing partition.

    curated/conversations/<snapshot_id>/manifest.json
    curated/conversations/<snapshot_id>/parts/<kind>/dt=YYYY-MM-DD.parquet   messages (conversations, twcs)
                                                                              or feedback events (feedback)
    curated/conversations/CURRENT                                            the id of the current snapshot

A run writes the files of the partitions it read into its snapshot folder; its manifest lists those and,
by key, the files of the other partitions where earlier snapshots wrote them. Files are never rewritten
or copied: storage follows the data, and a run reads only the columns it needs of earlier files (range
reads), never loading the history, so its memory follows the size of the batch. Files are sorted by
(conversation_id, turn) or by event_id; the snapshot id hashes the partition names and the files'
content hashes, so re-running a day yields the same id. A snapshot folder must therefore be kept while a
later manifest refers to it (see `referenced_folders`).

Snapshots written before the per-partition layout (one messages.parquet, one feedback.parquet) are read
as well; the next run writes their partitions as files of its own snapshot.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replyloop.contract import CURATED_PREFIX, CURRENT_KEY, FEEDBACK_SCHEMA, MESSAGE_SCHEMA
from replyloop.lake import Lake

MESSAGE_SORT = [("conversation_id", "ascending"), ("turn", "ascending")]
FEEDBACK_SORT = [("event_id", "ascending")]


def is_feedback(partition: str) -> bool:
    return partition.startswith("feedback/")


def schema_of(partition: str) -> pa.Schema:
    return FEEDBACK_SCHEMA if is_feedback(partition) else MESSAGE_SCHEMA


def part_key(partition: str) -> str:
    return f"parts/{partition}.parquet"


def current_id(lake: Lake) -> str | None:
    return lake.read_bytes(CURRENT_KEY).decode().strip() if lake.exists(CURRENT_KEY) else None


class Snapshot:
    """A stored snapshot (or the empty one before the first run), read partition by partition."""

    def __init__(self, lake: Lake, snapshot_id: str | None):
        self.lake, self.id = lake, snapshot_id
        self.base = f"{CURATED_PREFIX}/{snapshot_id}"
        self.manifest: dict = json.loads(lake.read_bytes(f"{self.base}/manifest.json")) if snapshot_id else {}
        self.legacy = bool(snapshot_id) and "parts" not in self.manifest  # the first layout: two whole tables

    @classmethod
    def current(cls, lake: Lake) -> Snapshot:
        return cls(lake, current_id(lake))

    @cached_property
    def _legacy_tables(self) -> dict[str, pa.Table]:
        messages = _read_parquet(self.lake, f"{self.base}/messages.parquet").cast(MESSAGE_SCHEMA)
        feedback = _read_parquet(self.lake, f"{self.base}/feedback.parquet").cast(FEEDBACK_SCHEMA)
        out = {}
        for table in (messages, feedback):
            for name in pc.unique(table["partition"]).to_pylist():
                out[name] = table.filter(pc.equal(table["partition"], name))
        return out

    @cached_property
    def parts(self) -> dict[str, dict]:
        """Partition name -> manifest entry (key relative to curated/conversations/, rows, sha256...)."""
        if self.legacy:
            return {name: {**describe(name, t), "key": None} for name, t in self._legacy_tables.items()}
        return self.manifest.get("parts", {})

    def read(self, partition: str, columns: list[str] | None = None) -> pa.Table:
        if self.legacy:
            table = self._legacy_tables[partition]
            return table.select(columns) if columns else table
        table = _read_parquet(self.lake, f"{CURATED_PREFIX}/{self.parts[partition]['key']}", columns)
        schema = schema_of(partition)
        return table.cast(pa.schema([schema.field(c) for c in columns]) if columns else schema)

    def scan(self, *, feedback: bool, columns: list[str] | None = None,
             skip: set[str] = frozenset()) -> Iterator[pa.Table]:
        """The message (or feedback) files one at a time, leaving out the partitions in `skip`."""
        for name in sorted(self.parts):
            if is_feedback(name) == feedback and name not in skip:
                yield self.read(name, columns)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """The whole snapshot: messages sorted by (conversation_id, turn), feedback by event_id."""
        messages = pa.concat_tables([MESSAGE_SCHEMA.empty_table(), *self.scan(feedback=False)])
        feedback = pa.concat_tables([FEEDBACK_SCHEMA.empty_table(), *self.scan(feedback=True)])
        return messages.sort_by(MESSAGE_SORT), feedback.sort_by(FEEDBACK_SORT)


def read_snapshot(lake: Lake, snapshot_id: str | None = None) -> tuple[str | None, pd.DataFrame, pd.DataFrame]:
    """(snapshot id, messages, feedback) of a snapshot, CURRENT by default; empty frames when none."""
    snap = Snapshot(lake, snapshot_id or current_id(lake))
    messages, feedback = snap.tables()
    return snap.id, messages.to_pandas(), feedback.to_pandas()


def read_manifest(lake: Lake, snapshot_id: str | None = None) -> dict | None:
    snapshot_id = snapshot_id or current_id(lake)
    if snapshot_id is None:
        return None
    return json.loads(lake.read_bytes(f"{CURATED_PREFIX}/{snapshot_id}/manifest.json"))


def describe(partition: str, table: pa.Table) -> dict:
    """The manifest entry of a partition file: where, how many rows, content hash, conversation counts."""
    entry = {"key": part_key(partition), "rows": table.num_rows, "sha256": digest(table)}
    if not is_feedback(partition):
        entry["conversations"] = _count_distinct(table, "conversation_id")
        for split in ("train", "eval"):
            entry[f"{split}_conversations"] = _count_distinct(table.filter(pc.equal(table["split"], split)),
                                                              "conversation_id")
        entry["unanswered_conversations"] = unanswered(table)
    return entry


def unanswered_ids(table: pa.Table) -> list[str]:
    """Conversations no agent answered (customer turns only): curated as traffic, nothing to train on;
    monitoring reads them. Needs the columns conversation_id and role."""
    answered = pc.unique(table["conversation_id"].filter(pc.equal(table["role"], "agent")))
    ids = pc.unique(table["conversation_id"])
    return sorted(ids.filter(pc.invert(pc.is_in(ids, value_set=answered))).to_pylist())


def unanswered(table: pa.Table) -> int:
    """How many conversations of a message table no agent answered."""
    if not table.num_rows:
        return 0
    answered = table.filter(pc.equal(table["role"], "agent"))
    return _count_distinct(table, "conversation_id") - _count_distinct(answered, "conversation_id")


def snapshot_id(parts: dict[str, dict]) -> str:
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(f"{name}\t{parts[name]['sha256']}\n".encode())
    return h.hexdigest()[:16]


def write_snapshot(lake: Lake, previous: Snapshot, new_parts: dict[str, pa.Table], manifest: dict) -> dict:
    """Store the snapshot made of `previous` with the partitions of `new_parts` replaced (or added).

    `new_parts` is consumed: each table is written, then dropped. Returns the manifest as stored (with
    `snapshot_id`, `totals` and `parts`); an existing snapshot with the same id is never rewritten.
    """
    carried = {name: entry for name, entry in previous.parts.items() if name not in new_parts}
    fresh = {name: describe(name, table) for name, table in new_parts.items()}
    if previous.legacy:  # files of the first layout do not exist on their own: write them as new ones
        fresh.update({name: entry for name, entry in carried.items()})
        new_parts.update({name: previous.read(name) for name in carried})
        carried = {}
    sid = snapshot_id({**carried, **fresh})
    base = f"{CURATED_PREFIX}/{sid}"
    for name, entry in fresh.items():
        entry["key"] = f"{sid}/{part_key(name)}"
    parts = dict(sorted({**carried, **fresh}.items()))
    manifest = {"snapshot_id": sid, **manifest, "totals": totals(parts), "parts": parts}
    if lake.exists(f"{base}/manifest.json"):  # immutable
        new_parts.clear()
        return {**json.loads(lake.read_bytes(f"{base}/manifest.json")), "reingested": manifest}
    for name in sorted(new_parts):
        lake.write_bytes(f"{CURATED_PREFIX}/{parts[name]['key']}", parquet_bytes(new_parts.pop(name)))
    lake.write_bytes(f"{base}/manifest.json", json.dumps(manifest, indent=2).encode())  # last: marks it complete
    return manifest


def referenced_folders(lake: Lake, snapshot_id: str) -> set[str]:
    """The snapshot folders whose files a snapshot's manifest uses (retention must keep all of them)."""
    parts = Snapshot(lake, snapshot_id).manifest.get("parts", {})
    return {entry["key"].split("/", 1)[0] for entry in parts.values()} | {snapshot_id}


def totals(parts: dict[str, dict]) -> dict:
    """Counts over all partitions (a conversation id landing on two days counts twice)."""
    msgs = [e for name, e in parts.items() if not is_feedback(name)]
    return {"conversations": sum(e["conversations"] for e in msgs), "messages": sum(e["rows"] for e in msgs),
            "train_conversations": sum(e["train_conversations"] for e in msgs),
            "eval_conversations": sum(e["eval_conversations"] for e in msgs),
            "unanswered_conversations": sum(e.get("unanswered_conversations", 0) for e in msgs),
            "feedback_events": sum(e["rows"] for name, e in parts.items() if is_feedback(name))}


def digest(table: pa.Table) -> str:
    """Content hash of a table: column names, types, null masks and values, independent of how the Arrow
    buffers happen to be laid out (read from Parquet or built in memory give the same hash)."""
    h = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        h.update(f"{name}:{col.type}:{len(col)}".encode())
        if not len(col):
            continue
        h.update(np.packbits(col.is_null().to_numpy(zero_copy_only=False)).tobytes())
        if pa.types.is_string(col.type):
            filled = col.fill_null("")
            offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)[filled.offset: filled.offset + len(filled) + 1]
            h.update((offsets - offsets[0]).tobytes())
            h.update(memoryview(filled.buffers()[2])[offsets[0]: offsets[-1]] if offsets[-1] > offsets[0] else b"")
        else:
            h.update(col.fill_null(0).to_numpy().tobytes())
    return h.hexdigest()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _read_parquet(lake: Lake, key: str, columns: list[str] | None = None) -> pa.Table:
    """Only the column chunks asked for are read (a seekable handle: a local file, or S3 range requests)."""
    with lake.open_random(key) as fh:
        return pq.read_table(fh, columns=columns)


def _count_distinct(table: pa.Table, column: str) -> int:
    return int(pc.count_distinct(table[column]).as_py()) if table.num_rows else 0
