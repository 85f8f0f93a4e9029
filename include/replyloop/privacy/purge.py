"""`replyloop erase --purge`: delete what still holds erased subjects once the current snapshot is clean.

1. Snapshots: every stored snapshot other than CURRENT that holds a subject loses its manifest and the
   files it wrote that CURRENT does not use; so does any snapshot referring to a file deleted that way
   (repeated until nothing changes). Refused when the champion's training snapshot would go, unless forced;
   the refusal names the version.
2. Landing and quarantine: every raw file and quarantine file with a record naming a subject is written
   again without those records (gzip stays gzip; TWCS threads go whole, as ingestion would rebuild them).

Runs under the lake lock; the report lists every key deleted or rewritten.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging

from replyloop.contract import CURATED_PREFIX, QUARANTINE_PREFIX, RAW_PREFIXES
from replyloop.ingest import forget
from replyloop.ingest.readers import TWCS_COLUMNS
from replyloop.ingest.snapshot import Snapshot, current_id
from replyloop.lake import Lake, lake_for
from replyloop.privacy import lineage
from replyloop.privacy.erasure import ErasureError, ErasureSet
from replyloop.privacy.lock import settings_lock

log = logging.getLogger(__name__)


def purge(settings, *, force: bool = False, lake: Lake | None = None) -> dict:
    lake = lake or lake_for(settings)
    with settings_lock(lake, settings, "erasure purge"):
        erasure = ErasureSet.load(lake)
        if not erasure:
            return {"requests": 0, "deleted": [], "rewritten": {}}
        current = current_id(lake)
        missing = erasure.request_ids - forget.applied(lake, current) if current else set()
        if missing:
            raise ErasureError(f"the current snapshot {current} still holds the subjects of request(s) "
                               f"{', '.join(sorted(missing))}: run `replyloop ingest` or `replyloop erase --purge` (it applies them first) "
                               "first; nothing was purged")
        holdings = lineage.Holdings(lake, erasure)
        doomed = _doomed_snapshots(lake, current, holdings)
        _refuse_champion(settings, doomed, force)
        deleted = _delete_snapshots(lake, current, doomed)
        dropped = set(erasure.conversations).union(*(holdings.conversations(s) or set() for s in doomed))
        rewritten = _rewrite_landing(lake, erasure, dropped)
    log.info("purge: %d key(s) deleted, %d file(s) rewritten", len(deleted), len(rewritten))
    return {"requests": len(erasure.request_ids), "deleted_snapshots": sorted(doomed), "deleted": deleted,
            "rewritten": rewritten}


# -- snapshots -----------------------------------------------------------------------------------------

def stored_snapshots(lake: Lake) -> list[str]:
    return sorted({obj.key.split("/")[2] for obj in lake.list(f"{CURATED_PREFIX}/")
                   if obj.key.endswith("/manifest.json") and obj.key.count("/") == 3})


def _keys(lake: Lake, snapshot_id: str) -> set[str]:
    """The part files a snapshot uses (keys under curated/conversations/)."""
    snap = Snapshot(lake, snapshot_id)
    if snap.legacy:
        return {f"{snapshot_id}/messages.parquet", f"{snapshot_id}/feedback.parquet"}
    return {entry["key"] for entry in snap.parts.values()}


def _doomed_snapshots(lake: Lake, current: str | None, holdings: lineage.Holdings) -> set[str]:
    used = {s: _keys(lake, s) for s in stored_snapshots(lake) if s != current}
    needed = _keys(lake, current) if current else set()
    doomed = {s for s in used if holdings.conversations(s)}
    while True:
        gone = {k for s in doomed for k in used[s] if k.startswith(f"{s}/")} - needed
        more = {s for s, keys in used.items() if s not in doomed and keys & gone}
        if not more:
            return doomed
        doomed |= more


def _refuse_champion(settings, doomed: set[str], force: bool) -> None:
    from replyloop import registry

    if not doomed or lineage.no_registry(settings):
        return
    champion = registry.alias_version(settings, registry.CHAMPION)
    if champion is None:
        return
    tag = lineage.snapshot_tag()
    trained_on = next((v.tags or {}).get(tag) for v in registry.versions(settings) if str(v.version) == champion)
    if trained_on in doomed and not force:
        raise ErasureError(f"the purge would delete snapshot {trained_on}, on which the champion, version {champion} "
                           f"of {settings.model_name}, was trained (it holds erased subjects). Retrain and promote a "
                           "version trained without them, or purge with --force to delete it anyway; nothing was purged")


def _delete_snapshots(lake: Lake, current: str | None, doomed: set[str]) -> list[str]:
    needed = _keys(lake, current) if current else set()
    deleted = []
    for s in sorted(doomed):
        own = [k for k in _keys(lake, s) if k.startswith(f"{s}/") and k not in needed]
        for key in [*own, f"{s}/manifest.json"]:
            if lake.exists(f"{CURATED_PREFIX}/{key}"):
                lake.delete(f"{CURATED_PREFIX}/{key}")
                deleted.append(f"{CURATED_PREFIX}/{key}")
        lake.delete(forget.state_key(s))
    return deleted


# -- landing and quarantine ----------------------------------------------------------------------------

def _rewrite_landing(lake: Lake, erasure: ErasureSet, dropped: set[str]) -> dict[str, int]:
    """Raw and quarantine files written again without the records naming a subject: key -> records removed."""
    out: dict[str, int] = {}
    for kind, prefix in RAW_PREFIXES.items():
        if kind == "twcs":
            by_day: dict[str, list[str]] = {}
            for obj in lake.list(f"{prefix}/"):
                by_day.setdefault(obj.key.rsplit("/", 1)[0], []).append(obj.key)
            for keys in by_day.values():
                out.update(_rewrite_twcs(lake, keys, erasure))
            continue
        for obj in lake.list(f"{prefix}/"):
            removed = _rewrite_jsonl(lake, obj.key, lambda rec: _names(erasure, dropped, rec, kind == "feedback"))
            if removed:
                out[obj.key] = removed
    for obj in lake.list(f"{QUARANTINE_PREFIX}/"):
        removed = _rewrite_jsonl(lake, obj.key, lambda line: isinstance(line, dict) and forget.names_line(
            erasure, dropped, line))
        if removed:
            out[obj.key] = removed
    return out


def _names(erasure: ErasureSet, dropped: set[str], record, feedback: bool) -> bool:
    if feedback and isinstance(record, dict) and str(record.get("conversation_id")) in dropped:
        return True
    return erasure.names(record)


def _read_text(lake: Lake, key: str) -> str:
    data = lake.read_bytes(key)
    return (gzip.decompress(data) if key.endswith(".gz") else data).decode("utf-8", "surrogateescape")


def _write_text(lake: Lake, key: str, text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    lake.write_bytes(key, gzip.compress(data, mtime=0) if key.endswith(".gz") else data)


def _rewrite_jsonl(lake: Lake, key: str, matches) -> int:
    try:
        lines = _read_text(lake, key).splitlines(keepends=True)
    except (OSError, EOFError, gzip.BadGzipFile):  # unreadable: checked as one raw string
        lines = [lake.read_bytes(key).decode("utf-8", "replace")]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = line
        if not matches(record):
            kept.append(line)
    if len(kept) < len(lines):
        _write_text(lake, key, "".join(kept))
    return len(lines) - len(kept)


def _rewrite_twcs(lake: Lake, keys: list[str], erasure: ErasureSet) -> dict[str, int]:
    """A TWCS partition: the threads (root and every reply below it) that hold a subject go whole."""
    files = {key: list(csv.reader(io.StringIO(_read_text(lake, key), newline=""))) for key in keys}
    parent, root_hits = {}, set()
    for rows in files.values():
        header = rows[0] if rows else []
        if not set(TWCS_COLUMNS) <= set(header):
            continue
        col = {name: header.index(name) for name in TWCS_COLUMNS}
        for row in rows[1:]:
            if len(row) == len(header):
                tid = row[col["tweet_id"]].removesuffix(".0")
                parent[tid] = row[col["in_response_to_tweet_id"]].removesuffix(".0")
                if row[col["author_id"]] in erasure.authors:
                    root_hits.add(tid)
    roots = {_root(t, parent) for t in root_hits} | {c.removeprefix("twcs-") for c in erasure.conversations}
    out = {}
    for key, rows in files.items():
        if not rows or not set(TWCS_COLUMNS) <= set(rows[0]):
            continue
        tid_col = rows[0].index("tweet_id")
        kept = [rows[0]] + [r for r in rows[1:] if not (
            (len(r) == len(rows[0]) and _root(r[tid_col].removesuffix(".0"), parent) in roots)
            or (len(r) != len(rows[0]) and erasure.names(",".join(r))))]
        if len(kept) < len(rows):
            buf = io.StringIO()
            csv.writer(buf).writerows(kept)
            _write_text(lake, key, buf.getvalue())
            out[key] = len(rows) - len(kept)
    return out


def _root(tid: str, parent: dict[str, str]) -> str:
    seen = set()
    while parent.get(tid) and parent[tid] in parent and tid not in seen:
        seen.add(tid)
        tid = parent[tid]
    return tid
