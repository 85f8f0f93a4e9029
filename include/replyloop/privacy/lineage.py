"""Which stored snapshots, and which registered model versions, hold (or learned from) erased subjects.

A version's training snapshot is its registry tag `replyloop.snapshot_id` (the lineage training writes).
A snapshot holds a subject when one of its message files does; files shared by several snapshots are
read once (id columns only).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from replyloop.contract import CURATED_PREFIX
from replyloop.ingest.snapshot import Snapshot, is_feedback
from replyloop.lake import Lake
from replyloop.privacy.erasure import ErasureSet


def snapshot_tag() -> str:
    """The registry tag naming a version's training snapshot (the registry owns tag names)."""
    from replyloop import registry

    tag = getattr(registry, "Tag", None)
    return tag.SNAPSHOT if tag is not None else "replyloop.snapshot_id"


class Holdings:
    """Per snapshot: the conversation ids of erased subjects it holds; file reads cached across snapshots."""

    def __init__(self, lake: Lake, erasure: ErasureSet):
        self.lake, self.erasure = lake, erasure
        self._files: dict[str, set[str]] = {}

    def stored(self, snapshot_id: str) -> bool:
        return self.lake.exists(f"{CURATED_PREFIX}/{snapshot_id}/manifest.json")

    def conversations(self, snapshot_id: str) -> set[str] | None:
        """The held conversation ids, or None when the snapshot is no longer stored."""
        if not self.stored(snapshot_id):
            return None
        snap = Snapshot(self.lake, snapshot_id)
        found: set[str] = set()
        for name, entry in snap.parts.items():
            if is_feedback(name):
                continue
            key = entry.get("key") or f"{snapshot_id}:{name}"  # legacy layout: no file of its own
            if key not in self._files:
                self._files[key] = self.erasure.hit_conversations(snap.read(name, ["conversation_id", "author_id"]))
            found |= self._files[key]
        return found


def match_counts(lake: Lake, snapshot_id: str | None, subjects: list[dict]) -> dict[str, dict]:
    """Per subject ("kind:id"): conversations and messages of the snapshot that hold it (0 and 0: unknown)."""
    out = {f"{s['kind']}:{s['id']}": {"conversations": 0, "messages": 0} for s in subjects}
    if snapshot_id is None:
        return out
    erasure = ErasureSet.of([{"request_id": "-", "subjects": subjects}])
    snap = Snapshot(lake, snapshot_id)
    for table in snap.scan(feedback=False, columns=["conversation_id", "author_id"]):
        for kind, column, values in (("author", "author_id", erasure.authors),
                                     ("conversation", "conversation_id", erasure.conversations)):
            if not values:
                continue
            rows = table.filter(pc.is_in(table[column], value_set=pa.array(sorted(values), pa.string())))
            stats = rows.group_by(column).aggregate([("conversation_id", "count_distinct"), ("conversation_id", "count")])
            for row in stats.to_pylist():
                entry = out[f"{kind}:{row[column]}"]
                entry["conversations"] += row["conversation_id_count_distinct"]
                entry["messages"] += row["conversation_id_count"]
    return out


def models_trained_on(settings, lake: Lake, erasure: ErasureSet, holdings: Holdings | None = None) -> list[dict]:
    """The registered versions whose training snapshot held a subject (or can no longer be checked)."""
    from replyloop import registry

    if no_registry(settings):
        return []
    holdings = holdings or Holdings(lake, erasure)
    tag = snapshot_tag()
    versions = registry.versions(settings)
    aliases = {registry.alias_version(settings, a): a for a in (registry.CHAMPION, registry.CHALLENGER)} if versions else {}
    out = []
    for v in versions:
        snapshot_id = (v.tags or {}).get(tag)
        if not snapshot_id:
            continue
        held = holdings.conversations(snapshot_id)
        if held is None or held:
            out.append({"version": str(v.version), "snapshot_id": snapshot_id,
                        "alias": aliases.get(str(v.version)),
                        "conversations": None if held is None else len(held),
                        "note": "training snapshot no longer stored: cannot tell" if held is None else
                                "trained on a snapshot that held the subject(s)"})
    return out


def no_registry(settings) -> bool:
    """A local SQLite registry that was never created holds no version (and an erasure should not create it)."""
    uri = settings.tracking_uri
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()


def describe(report: list[dict]) -> list[str]:
    """Lines for people: one per version."""
    if not report:
        return ["no registered model version was trained on data of these subjects"]
    return [f"v{r['version']}{' (' + r['alias'] + ')' if r['alias'] else ''}: snapshot {r['snapshot_id']}, "
            + (f"{r['conversations']} conversation(s) of the subject(s)" if r["conversations"] is not None
               else r["note"]) for r in report]
