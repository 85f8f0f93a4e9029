"""Recording an erasure request: the entry point of `replyloop erase` and of the `erase_subjects` DAG.

Under the lake lock (an ingestion running meanwhile finishes first, or the request waits):
count what the current snapshot holds of each subject, find the model versions trained on them, and
append the request to the log. Nothing is recorded when the input is bad. The request takes effect
at the next ingestion (`replyloop ingest`, or `apply` below, which needs no new data).
"""

from __future__ import annotations

import logging
from datetime import datetime

from replyloop.ingest.snapshot import current_id
from replyloop.lake import Lake, lake_for
from replyloop.privacy import lineage
from replyloop.privacy.erasure import ErasureError, ErasureSet, append_record, new_record, parse_subjects, read_subject_file
from replyloop.privacy.lock import settings_lock

log = logging.getLogger(__name__)


def request_erasure(settings, subjects: list[dict], *, requested_by: str, reason: str | None = None,
                    lake: Lake | None = None, now: datetime | None = None, request_id: str | None = None) -> dict:
    """Record a request for `subjects` (see `erasure.parse_subjects`); returns the stored record with
    `unmatched`: the subjects the current snapshot holds nothing of. A `request_id` already in the log
    (a retried task) is not recorded twice."""
    lake = lake or lake_for(settings)
    record = new_record(subjects, requested_by=requested_by, reason=reason, now=now)
    record["request_id"] = request_id or record["request_id"]
    with settings_lock(lake, settings, f"erasure request {record['request_id']}"):
        earlier = [r for r in ErasureSet.load(lake).records if r["request_id"] == record["request_id"]]
        if earlier:
            return {**earlier[0], "key": None, "unmatched": [n for n, m in earlier[0]["matched"].items()
                                                             if not m["messages"]], "lineage": [], "repeated": True}
        snapshot_id = current_id(lake)
        record["snapshot_id"] = snapshot_id
        record["matched"] = lineage.match_counts(lake, snapshot_id, subjects)
        report = lineage.models_trained_on(settings, lake, ErasureSet.of([record]))
        record["model_versions"] = [r["version"] for r in report]
        key = append_record(lake, record)
    log.info("erasure request %s recorded at %s (%d subject(s))", record["request_id"], lake.url(key), len(subjects))
    unmatched = [name for name, m in record["matched"].items() if not m["messages"]]
    return {**record, "key": key, "unmatched": unmatched, "lineage": report}


def apply(settings, lake: Lake | None = None, now: datetime | None = None) -> dict:
    """Write the current snapshot again without the subjects of requests it is not clean of yet (no new
    landing data is read; the nightly ingestion does the same as part of its run)."""
    from replyloop.ingest.pipeline import apply_erasures

    return apply_erasures(settings, lake=lake, now=now)


def erase_subjects(settings, *, authors=(), conversations=(), file_text: str | None = None, file_name: str | None = None,
                   requested_by: str, reason: str | None = None, apply_now: bool = True, purge: bool = False,
                   force: bool = False, lake: Lake | None = None, request_id: str | None = None) -> dict:
    """What `replyloop erase` and the `erase_subjects` DAG do: record (when ids are given), apply, purge."""
    lake = lake or lake_for(settings)
    subjects = []
    if file_text is not None:
        subjects = read_subject_file(file_text, file_name or "erasure file")
    if authors or conversations:
        given = parse_subjects(authors, conversations)
        subjects = parse_subjects([s["id"] for s in subjects + given if s["kind"] == "author"],
                                  [s["id"] for s in subjects + given if s["kind"] == "conversation"])
    if not subjects and not purge:
        raise ErasureError("nothing to do: give --author, --conversation or --file, or --purge")
    out: dict = {}
    if subjects:
        out["request"] = request_erasure(settings, subjects, requested_by=requested_by, reason=reason, lake=lake,
                                         request_id=request_id)
    if apply_now or purge:
        manifest = apply(settings, lake=lake)
        out["applied"] = {"status": manifest["status"], "snapshot_id": manifest.get("snapshot_id"),
                          "rewritten": (manifest.get("erasure") or {}).get("rewritten", {})}
    if purge:
        from replyloop.privacy.purge import purge as run_purge

        out["purge"] = run_purge(settings, force=force, lake=lake)
    return out


def report_lines(result: dict) -> list[str]:
    """The result of `erase_subjects` for people."""
    lines = []
    req = result.get("request")
    if req:
        lines.append(f"erasure request {req['request_id']} " + ("was recorded before (a repeated run)" if req.get(
            "repeated") else f"recorded ({req['key']}), by {req['requested_by']}"))
        for name, m in req["matched"].items():
            lines.append(f"  {name}: " + (f"{m['conversations']} conversation(s), {m['messages']} message(s) in "
                                          f"snapshot {req['snapshot_id']}" if m["messages"]
                                          else "matches nothing in the current snapshot"))
        lines.append("model versions trained on them:")
        lines += [f"  {line}" for line in lineage.describe(req["lineage"])]
    applied = result.get("applied")
    if applied:
        lines.append(f"current snapshot: {applied['snapshot_id']} ({applied['status']}; partitions written again: "
                     f"{', '.join(applied['rewritten']) or 'none'})")
    purged = result.get("purge")
    if purged:
        lines.append(f"purge: {len(purged.get('deleted_snapshots', []))} snapshot(s) and "
                     f"{len(purged['deleted'])} file(s) deleted, {len(purged['rewritten'])} landing/quarantine "
                     "file(s) rewritten")
        lines += [f"  deleted {key}" for key in purged["deleted"]]
        lines += [f"  rewrote {key} (-{n} record(s))" for key, n in purged["rewritten"].items()]
    return lines
