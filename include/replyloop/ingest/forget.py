"""Erasure requests applied by an ingestion run (see `replyloop.privacy.erasure` for the log).

A run drops, before anything is counted as curated or stored:
  - the batch's conversations that hold a subject (its id, or a message of an erased author);
  - feedback events on those conversations, and on conversations of the snapshot that hold a subject;
  - quarantine lines whose raw record names a subject;
and writes again, without them, the partitions of the previous snapshot that still hold a subject of a
request that snapshot was not cleaned of. Erased records count as `erased`, not as `raw`, so
`raw = curated + quarantined + duplicates` holds as before.

Which requests a snapshot is clean of is kept in `state/erasure/<snapshot_id>.json` (snapshots are
immutable, and a request that matches nothing leaves the snapshot id unchanged).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replyloop.contract import ERASURE_STATE_PREFIX
from replyloop.ingest.snapshot import Snapshot, is_feedback
from replyloop.lake import Lake
from replyloop.privacy.erasure import ErasureSet


def state_key(snapshot_id: str) -> str:
    return f"{ERASURE_STATE_PREFIX}/{snapshot_id}.json"


def applied(lake: Lake, snapshot_id: str | None) -> set[str]:
    """The request ids a stored snapshot is clean of."""
    if snapshot_id is None or not lake.exists(state_key(snapshot_id)):
        return set()
    return set(json.loads(lake.read_bytes(state_key(snapshot_id)))["applied"])


def mark_applied(lake: Lake, snapshot_id: str, erasure: ErasureSet) -> None:
    lake.write_bytes(state_key(snapshot_id), json.dumps({"snapshot_id": snapshot_id,
                                                           "applied": sorted(erasure.request_ids)}).encode())


def conversation_keep(convs: pa.Table, rows: pa.Table, sizes: np.ndarray, erasure: ErasureSet) -> np.ndarray:
    """One flag per conversation of the batch: kept (holds no subject). Set lookups on the id columns."""
    if not erasure or not len(sizes):
        return np.ones(len(sizes), dtype=bool)
    return ~erasure.conversation_flags(convs["conversation_id"], rows["author_id"], sizes)


def snapshot_hits(prev: Snapshot, pending: ErasureSet, skip: set[str]) -> dict[str, set[str]]:
    """Partition -> conversation ids of the previous snapshot that hold a subject of `pending` (message
    partitions), or whose feedback must go with them (feedback partitions). Reads id columns only."""
    hits: dict[str, set[str]] = {}
    if not pending:
        return hits
    for name in sorted(prev.parts):
        if name not in skip and not is_feedback(name):
            found = pending.hit_conversations(prev.read(name, ["conversation_id", "author_id"]))
            if found:
                hits[name] = found
    ids = set().union(pending.conversations, *hits.values())
    values = pa.array(sorted(ids), pa.string())
    for name in sorted(prev.parts):
        if ids and name not in skip and is_feedback(name):
            column = prev.read(name, ["conversation_id"])["conversation_id"]
            found = set(pc.unique(column.filter(pc.is_in(column, value_set=values))).to_pylist())
            if found:
                hits[name] = found
    return hits


def rewrite(prev: Snapshot, drops: dict[str, set[str]]) -> dict[str, pa.Table]:
    """The partitions of `drops` read whole and written again without the given conversation ids."""
    out = {}
    for name in sorted(drops):
        table = prev.read(name)
        gone = pc.is_in(table["conversation_id"], value_set=pa.array(sorted(drops[name]), pa.string()))
        out[name] = table.filter(pc.invert(gone))
    return out


def names_line(erasure: ErasureSet, dropped: set[str], line: dict) -> bool:
    """Whether a quarantine line names a subject, or is feedback on a conversation dropped for one."""
    raw = line.get("raw")
    if line.get("unit") == "feedback" and isinstance(raw, dict) and str(raw.get("conversation_id")) in dropped:
        return True
    return erasure.names(raw)
