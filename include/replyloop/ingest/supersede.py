"""Served replies (`raw/replies`, one record per reply the API served): the latest record of a conversation wins.

Each record holds the conversation so far and the served reply, so the record of a conversation's third
reply holds the first two as well. Of the records of one conversation id, the one with the most turns is
kept (on a tie, the later one); the others count as duplicates (`duplicates.superseded`), so
`raw = curated + quarantined + duplicates` still holds. Against the previous snapshot: a record with no
more turns than the stored one is superseded by it; one with more turns replaces it (the stored
partition is written again without the older record). Vectorised over the batch; only the ids found in
the snapshot's reply partitions are looked at one by one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replyloop.ingest.snapshot import Snapshot

PREFIX = "replies/"


def supersede(convs: pa.Table, sizes: np.ndarray, prev: Snapshot, skip: set[str]) -> tuple[np.ndarray, dict[str, set[str]]]:
    """(one flag per conversation of the batch: kept, partition of `prev` -> conversation ids it loses)."""
    keep = np.ones(len(sizes), dtype=bool)
    is_reply = np.asarray(pc.starts_with(convs["partition"], PREFIX).to_numpy(zero_copy_only=False), dtype=bool)
    if not is_reply.any():
        return keep, {}
    idx = np.flatnonzero(is_reply)
    ids = convs["conversation_id"].take(pa.array(idx)).combine_chunks()
    codes = ids.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((idx, sizes[idx], codes))  # by conversation, then turns, then position: winner last
    last = np.ones(len(order), dtype=bool)
    last[:-1] = codes[order][1:] != codes[order][:-1]
    keep[idx[order][~last]] = False
    winners = idx[order][last]
    return keep, _against_snapshot(convs, sizes, winners, keep, prev, skip)


def _against_snapshot(convs: pa.Table, sizes: np.ndarray, winners: np.ndarray, keep: np.ndarray, prev: Snapshot,
                      skip: set[str]) -> dict[str, set[str]]:
    win_ids = convs["conversation_id"].take(pa.array(winners)).combine_chunks()
    stored: dict[str, list[tuple[str, int]]] = {}  # id -> [(partition, turns)]
    for name in sorted(prev.parts):
        if not name.startswith(PREFIX) or name in skip:
            continue
        table = prev.read(name, ["conversation_id", "turn"])
        table = table.filter(pc.is_in(table["conversation_id"], value_set=win_ids))
        for row in table.group_by("conversation_id").aggregate([("turn", "max")]).to_pylist():
            stored.setdefault(row["conversation_id"], []).append((name, row["turn_max"] + 1))
    drops: dict[str, set[str]] = {}
    if not stored:
        return drops
    for pos, cid in zip(winners.tolist(), win_ids.to_pylist()):
        for name, turns in stored.get(cid, ()):
            if turns >= sizes[pos]:
                keep[pos] = False
            else:
                drops.setdefault(name, set()).add(cid)
    return drops
