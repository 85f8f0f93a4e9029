"""Retention: `replyloop cleanup` and the nightly ingest DAG's cleanup task.

Deletes what is past its retention (settings, in days) and no longer referenced:
  - raw landing partitions `raw/<kind>/dt=D/` older than `raw_retention_days` that were ingested
    (a partition never ingested is kept, whatever its age);
  - quarantine partitions `quarantine/dt=D/` older than `quarantine_retention_days`;
  - snapshot folders whose manifest is older than `snapshot_retention_days`, unless CURRENT, the
    champion's or the challenger's training snapshot, or a younger snapshot still uses a file in them.
It also lists the kept snapshot folders written before the latest erasure request that CURRENT no longer
uses: they may still hold erased subjects, and `replyloop erase --purge` deletes them.
Runs under the lake lock; the report names every key deleted.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta

from replyloop.contract import CURATED_PREFIX, QUARANTINE_PREFIX, RAW_PREFIXES, STATE_PREFIX
from replyloop.ingest import forget
from replyloop.ingest.snapshot import current_id, referenced_folders
from replyloop.lake import Lake, lake_for
from replyloop.privacy.erasure import ErasureSet
from replyloop.privacy.lock import settings_lock
from replyloop.privacy.purge import stored_snapshots

log = logging.getLogger(__name__)


def cleanup(settings, *, lake: Lake | None = None, today: date | None = None, dry_run: bool = False) -> dict:
    lake = lake or lake_for(settings)
    today = today or datetime.now(UTC).date()
    with settings_lock(lake, settings, "retention cleanup"):
        plan = {"raw": _old_raw(lake, today - timedelta(days=settings.raw_retention_days)),
                "quarantine": _old_days(lake, QUARANTINE_PREFIX, today - timedelta(days=settings.quarantine_retention_days)),
                **_old_snapshots(settings, lake, today - timedelta(days=settings.snapshot_retention_days))}
        deleted = {}
        for what in ("raw", "quarantine", "snapshots"):
            deleted[what] = plan[what]
            if not dry_run:
                for prefix in plan[what]:
                    lake.delete(prefix)
                    if what == "snapshots":
                        lake.delete(forget.state_key(prefix.rsplit("/", 1)[-1]))
    log.info("cleanup%s: %d raw partition(s), %d quarantine partition(s), %d snapshot folder(s) deleted; "
             "%d folder(s) may hold erased subjects", " (dry run)" if dry_run else "", len(deleted["raw"]),
             len(deleted["quarantine"]), len(deleted["snapshots"]), len(plan["purge_candidates"]))
    return {"dry_run": dry_run, "deleted": deleted, "purge_candidates": plan["purge_candidates"],
            "kept_snapshots": plan["kept_snapshots"]}


def _day(key: str) -> str | None:
    part = next((p for p in key.split("/") if p.startswith("dt=")), None)
    return part[3:13] if part else None


def _old_days(lake: Lake, prefix: str, before: date) -> list[str]:
    days = {_day(obj.key) for obj in lake.list(f"{prefix}/")} - {None}
    return [f"{prefix}/dt={d}" for d in sorted(days) if d < before.isoformat()]


def _old_raw(lake: Lake, before: date) -> list[str]:
    ingested = {obj.key.removeprefix(f"{STATE_PREFIX}/").removesuffix(".json") for obj in lake.list(f"{STATE_PREFIX}/")}
    out = []
    for kind, prefix in RAW_PREFIXES.items():
        out += [p for p in _old_days(lake, prefix, before) if f"{kind}/{p.rsplit('/', 1)[-1]}" in ingested]
    return out


def _old_snapshots(settings, lake: Lake, before: date) -> dict:
    current = current_id(lake)
    created = {s: _created(lake, s) for s in stored_snapshots(lake)}
    roots = {s for s, at in created.items() if at >= before.isoformat()} | {current} | _model_snapshots(settings)
    keep = set().union(*(referenced_folders(lake, s) for s in roots if s in created))
    folders = {obj.key.split("/")[2] for obj in lake.list(f"{CURATED_PREFIX}/") if obj.key.count("/") >= 3}
    gone = sorted(f"{CURATED_PREFIX}/{s}" for s in folders - keep)
    latest_request = max((r["requested_at"][:19] for r in ErasureSet.load(lake).records), default="")
    in_use = referenced_folders(lake, current) if current else set()
    candidates = sorted(s for s in keep - in_use if s in created and created[s][:19] < latest_request)
    return {"snapshots": gone, "purge_candidates": candidates, "kept_snapshots": sorted(keep)}


def _created(lake: Lake, snapshot_id: str) -> str:
    return json.loads(lake.read_bytes(f"{CURATED_PREFIX}/{snapshot_id}/manifest.json")).get("created_at", "")


def _model_snapshots(settings) -> set[str]:
    """The training snapshots of the champion and the challenger (kept for lineage and for rollback)."""
    from replyloop import registry
    from replyloop.privacy.lineage import no_registry, snapshot_tag

    if no_registry(settings):
        return set()
    versions = registry.versions(settings)
    wanted = {registry.alias_version(settings, a) for a in (registry.CHAMPION, registry.CHALLENGER)} if versions else set()
    return {(v.tags or {}).get(snapshot_tag()) for v in versions if str(v.version) in wanted} - {None}
