"""The ingestion run: landing partitions in, one immutable curated snapshot (or a clear failure) out.

    discover -> curate (read, normalise, redact PII, contamination guard, sketch; in parallel per file)
             -> de-duplicate -> validate (GX) -> quarantine / snapshot -> manifest

Incremental by day: a partition (`raw/<kind>/dt=YYYY-MM-DD`) is read once; `date=` re-reads one day.
The new snapshot is the previous one with the rows of the re-read partitions replaced, so re-running a
day yields the same snapshot id. Every raw record ends up curated, quarantined or counted as duplicate.

Files are curated by worker processes (`Settings.ingest_workers`, one per core by default when the batch
is large); results are merged in file order, so the snapshot does not depend on the number of workers.
Rows stay in Arrow from the workers to the Parquet file; pandas is used for the GX batch only.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import multiprocessing
import os
import re
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replyloop.contract import (CURRENT_KEY, FEEDBACK_SCHEMA, MESSAGE_SCHEMA, QUARANTINE_PREFIX, RAW_PREFIXES,
                                SCHEMA_VERSION, STATE_PREFIX)
from replyloop.ingest import forget
from replyloop.ingest.curate import CONVERSATION_PART, CurateConfig, Curated, Job, run_job
from replyloop.ingest.dedup import NUM_PERM, Deduplicator
from replyloop.ingest.readers import IngestError, Rejection
from replyloop.ingest.snapshot import (FEEDBACK_SORT, MESSAGE_SORT, Snapshot, read_manifest, read_snapshot, unanswered,
                                       write_snapshot)
from replyloop.ingest.supersede import supersede
from replyloop.ingest.validate import preload as preload_gx
from replyloop.ingest.validate import validate_messages
from replyloop.lake import Lake, lake_for
from replyloop.privacy.erasure import ErasureSet
from replyloop.privacy.lock import LakeBusy, settings_lock
from replyloop.settings import Settings, get_settings

__all__ = ["IngestError", "discover", "read_manifest", "read_snapshot", "run_ingest"]

log = logging.getLogger(__name__)
_DT = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")
CONVERSATION_KINDS = ("conversations", "twcs", "replies")
PARALLEL_MIN_BYTES = 8 << 20  # below this much text to parse, starting workers costs more than it saves
MAX_AUTO_WORKERS = 8  # each worker holds numpy, pyarrow and a file's rows; set REPLYLOOP_INGEST_WORKERS for more
GZIP_RATIO = 4  # JSONL and CSV of short messages compress about 4:1; a gzip file counts as 4x its size


@dataclass
class Partition:
    kind: str
    dt: str
    keys: list[str] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)
    size: int = 0  # bytes to parse, estimated (a gzip file counts GZIP_RATIO times its size)

    @property
    def name(self) -> str:
        return f"{self.kind}/dt={self.dt}"


@dataclass
class Batch:
    """What one run gathered from the curated jobs, merged in job order."""

    curated: list[Curated] = field(default_factory=list)
    feedback: list[dict] = field(default_factory=list)
    rejections: dict[str, list[dict]] = field(default_factory=dict)  # partition name -> quarantine lines
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    feedback_counts: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    sources: list[dict] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    raw_by_partition: Counter = field(default_factory=Counter)

    def merge(self, res: Curated, part: Partition, lake: Lake) -> None:
        self.feedback.extend(res.feedback)
        if res.rejections:
            self.rejections.setdefault(part.name, []).extend(res.rejections)
        self.counts["raw"] += res.raw
        self.feedback_counts["raw"] += res.feedback_raw
        for unit, reasons in (("conversation", res.reasons), ("feedback", res.feedback_reasons)):
            for reason, n in reasons.items():
                self._count_quarantined(unit, reason, n)
        self.pii.update(res.pii)
        self.raw_by_partition[part.name] += res.records
        for key, items in res.files:
            self.sources.append({"key": key, "etag": part.etags.get(key), "items": items})
            if items == 0:
                self.empty_files.append(key)
                log.warning("empty file: %s (no records)", lake.url(key))
        res.feedback, res.rejections = [], []  # they live in the batch now
        self.curated.append(res)

    def quarantine(self, part_name: str, rej: Rejection, *, unit: str) -> None:
        self.rejections.setdefault(part_name, []).append(rej.quarantine_line(part_name, unit))
        self._count_quarantined(unit, rej.reason, 1)

    def _count_quarantined(self, unit: str, reason: str, n: int) -> None:
        if unit == "conversation":
            self.counts["quarantined"] += n
            self.reasons[reason] += n
        else:
            self.feedback_counts["quarantined"] += n
            self.feedback_counts[f"quarantined.{reason}"] += n


# -- discovery ---------------------------------------------------------------------------------------

def discover(lake: Lake, *, date: str | None, done: set[str], today: str = "9999-12-31") -> list[Partition]:
    """Partitions to read: closed days (before `today`) not yet ingested, or only `date` (re-read even if
    ingested). Today's partition is still being written (the API lands feedback all day), so an
    incremental run leaves it for the next night."""
    parts: dict[tuple[str, str], Partition] = {}
    for kind, prefix in RAW_PREFIXES.items():
        listing = lake.list(f"{prefix}/dt={date}/" if date else f"{prefix}/")
        for obj in listing:
            m = _DT.search("/" + obj.key)
            if not m or obj.key.rsplit("/", 1)[-1].startswith("."):
                continue
            part = parts.setdefault((kind, m.group(1)), Partition(kind, m.group(1)))
            part.keys.append(obj.key)
            part.etags[obj.key] = obj.etag
            part.size += obj.size * (GZIP_RATIO if obj.key.endswith(".gz") else 1)
    chosen = [p for p in parts.values() if date or (p.name not in done and p.dt < today)]
    for p in chosen:
        p.keys.sort()
    return sorted(chosen, key=lambda p: (p.dt, list(RAW_PREFIXES).index(p.kind)))


def _state_key(part: Partition) -> str:
    return f"{STATE_PREFIX}/{part.kind}/dt={part.dt}.json"


def _ingested(lake: Lake) -> dict[str, dict]:
    out = {}
    for obj in lake.list(f"{STATE_PREFIX}/"):
        state = json.loads(lake.read_bytes(obj.key))
        out[state["partition"]] = state
    return out


# -- curation (parallel) -------------------------------------------------------------------------------

def _jobs(lake: Lake, parts: list[Partition], config: CurateConfig) -> list[tuple[Job, Partition]]:
    """One job per landing file; a TWCS partition is one job (its threads span files)."""
    jobs = []
    for part in parts:
        groups = [tuple(part.keys)] if part.kind == "twcs" else [(key,) for key in part.keys]
        jobs.extend((Job(lake, part.kind, part.name, keys, config), part) for keys in groups)
    return jobs


def _workers(settings: Settings, lake: Lake, jobs: list, total_bytes: int) -> int:
    if multiprocessing.current_process().daemon:
        return 1  # e.g. a Celery prefork worker: daemonic processes cannot have children
    if not getattr(lake, "portable", True):
        return 1  # a lake built around a client object cannot be re-opened in another process
    if settings.ingest_workers:
        return min(settings.ingest_workers, len(jobs))
    if total_bytes < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(available_cores(), MAX_AUTO_WORKERS, len(jobs)))


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (containers and pods
    with a CPU limit see every core of the node in the affinity mask)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _curate(jobs: list[tuple[Job, Partition]], workers: int) -> Iterator[tuple[Curated, Partition]]:
    """Results in job order, whatever order the workers finish in."""
    if workers <= 1:
        for job, part in jobs:
            yield run_job(job), part
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = deque((pool.submit(run_job, job), part) for job, part in jobs)
        while pending:
            future, part = pending.popleft()  # let each result go once it is merged
            yield future.result(), part
    except BrokenProcessPool as exc:
        _stop(pool)
        raise IngestError(f"an ingestion worker process died ({exc}); it may have run out of memory or been "
                          "killed. Nothing was written and CURRENT was not changed; re-run, or set "
                          "REPLYLOOP_INGEST_WORKERS=1 to ingest in one process.") from exc
    except BaseException:  # a job's error, a timeout or a kill of the task: do not wait for the other jobs
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Drop the jobs not started and end the workers now, rather than after their current file."""
    workers = list(getattr(pool, "_processes", {}).values())  # no public handle before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()
    for proc in workers:
        proc.join(timeout=10)


def _read(lake: Lake, parts: list[Partition], settings: Settings, now: datetime, batch: Batch) -> None:
    config = CurateConfig(now=now, max_chars=settings.max_message_chars, eval_fraction=settings.eval_fraction,
                          brand_handle=settings.brand_handle)
    jobs = _jobs(lake, parts, config)
    total_bytes = sum(p.size for p in parts)
    workers = _workers(settings, lake, jobs, total_bytes)
    log.info("curating %d file job(s), ~%.1f MB to parse, with %d worker process(es)", len(jobs), total_bytes / 1e6,
             workers)
    if workers > 1:
        preload_gx()  # the parent mostly waits on the workers meanwhile
    started, records = time.monotonic(), 0
    for done, (res, part) in enumerate(_curate(jobs, workers), start=1):
        batch.merge(res, part, lake)
        records += res.records
        secs = max(time.monotonic() - started, 1e-6)
        if part.kind == "feedback":
            what = f"{res.feedback_raw} feedback events ({sum(res.feedback_reasons.values())} quarantined)"
        else:
            what = f"{res.raw} conversations ({len(res.sizes)} passed, {sum(res.reasons.values())} quarantined)"
        log.info("[%d/%d] %s %s: %s in %.1fs; %d records so far, %.0f records/s", done, len(jobs), part.name,
                 ", ".join(_file_names(res)), what, res.seconds, records, records / secs)


def _file_names(res: Curated) -> list[str]:
    return [key.rsplit("/", 1)[-1] for key, _ in res.files] or [res.partition]


# -- snapshot ------------------------------------------------------------------------------------------

def _by_partition(holder: list[pa.Table], fb_rows: list[dict], parts: list[Partition]) -> dict[str, pa.Table]:
    """The new rows as one sorted table per re-read partition (an empty one where nothing was kept, so
    the partition's old rows are replaced all the same). Takes the message table out of `holder` (the
    only reference to it) and sorts it column by column, letting each unsorted column go: about one copy
    of the rows is held, not two. The message tables returned are slices of one sorted table."""
    new_msgs = holder.pop()
    order = pc.sort_indices(new_msgs, sort_keys=[("partition", "ascending"), *MESSAGE_SORT])
    columns = []
    for name in MESSAGE_SCHEMA.names:
        columns.append(new_msgs.column(name).take(order).combine_chunks())
        new_msgs = new_msgs.drop_columns([name])
        _release_memory()
    ordered = pa.Table.from_arrays(columns, schema=MESSAGE_SCHEMA)
    out, start = {}, 0
    for entry in pc.value_counts(ordered["partition"]).to_pylist():  # in order of appearance: sorted
        out[entry["values"]] = ordered.slice(start, entry["counts"])
        start += entry["counts"]
    feedback = pa.Table.from_pylist(fb_rows, schema=FEEDBACK_SCHEMA).sort_by(FEEDBACK_SORT)
    for part in parts:
        if part.kind == "feedback":
            out[part.name] = feedback.filter(pc.equal(feedback["partition"], part.name))
        elif part.name not in out:
            out[part.name] = MESSAGE_SCHEMA.empty_table()
    return out


def _release_memory() -> None:
    """Hand memory that Arrow's allocator keeps for reuse back to the system (large batches)."""
    pa.default_memory_pool().release_unused()


# -- the run -------------------------------------------------------------------------------------------

def run_ingest(settings: Settings | None = None, *, date: str | None = None, lake: Lake | None = None,
               now: datetime | None = None) -> dict:
    """Ingest new (or the given day's) landing partitions; return the manifest of the resulting snapshot.

    Raises IngestError for batch-level problems (no data for a requested day, schema change, volume or
    quarantine rate out of bounds, the lake held by an erasure for longer than the lock wait); the CURRENT
    snapshot is left as it was. Erasure requests of the log are applied (see `replyloop.ingest.forget`),
    also when there is no new data.
    """
    settings = settings or get_settings()
    lake = lake or lake_for(settings)
    try:
        with settings_lock(lake, settings, f"ingestion of {date or 'the new days'}"):
            return _run(settings, lake, date, now or datetime.now(UTC))
    except LakeBusy as exc:
        raise IngestError(str(exc)) from None


def apply_erasures(settings: Settings | None = None, *, lake: Lake | None = None, now: datetime | None = None) -> dict:
    """Apply pending erasure requests to the current snapshot without reading new landing data."""
    settings = settings or get_settings()
    lake = lake or lake_for(settings)
    try:
        with settings_lock(lake, settings, "erasure of the current snapshot"):
            prev = Snapshot.current(lake)
            erasure = ErasureSet.load(lake)
            return _erasure_only(lake, prev, erasure, erasure.without(forget.applied(lake, prev.id)),
                                 now or datetime.now(UTC))
    except LakeBusy as exc:
        raise IngestError(str(exc)) from None


def _run(settings: Settings, lake: Lake, date: str | None, now: datetime) -> dict:
    started = time.monotonic()
    if date:
        try:
            datetime.strptime(date, "%Y-%m-%d")
        except ValueError:
            raise IngestError(f"date={date!r} is not a day (expected YYYY-MM-DD)") from None
    state = _ingested(lake)
    parts = discover(lake, date=date, done=set(state), today=now.strftime("%Y-%m-%d"))
    if date and not parts:
        prefixes = ", ".join(lake.url(f"{p}/dt={date}/") for p in RAW_PREFIXES.values())
        raise IngestError(f"no landing data for dt={date}: nothing under {prefixes}")
    prev = Snapshot.current(lake)
    erasure = ErasureSet.load(lake)
    pending = erasure.without(forget.applied(lake, prev.id))
    if not parts:
        return _erasure_only(lake, prev, erasure, pending, now)

    rerun = sorted(p.name for p in parts)
    log.info("ingesting %d partition(s) into %s: %s", len(parts), lake.uri, ", ".join(rerun))
    batch = Batch()
    _read(lake, parts, settings, now, batch)
    by_name = {p.name: p for p in parts}
    if batch.counts["raw"] + batch.feedback_counts["raw"] == 0:
        raise IngestError(f"landing partition(s) {', '.join(rerun)} hold no records: "
                          f"{', '.join(lake.url(k) for k in batch.empty_files)} "
                          f"{'is' if len(batch.empty_files) == 1 else 'are'} empty. CURRENT was not changed.")

    rows, convs, sizes, sigs = _assemble(batch)
    drops = forget.snapshot_hits(prev, pending, set(rerun))
    rows, convs, sizes, sigs, dropped = _forget(rows, convs, sizes, sigs, erasure, batch, drops)
    keep, superseded = supersede(convs, sizes, prev, set(rerun))
    rows, convs, sizes, sigs = _take(rows, convs, sizes, sigs, keep)
    _count_duplicates(batch, "superseded", int((~keep).sum()))
    for name, ids in superseded.items():
        drops.setdefault(name, set()).update(ids)
    keep = _deduplicate(convs, sigs, batch, prev, set(rerun))
    new_msgs = rows.filter(pa.array(np.repeat(keep, sizes)))
    del rows, sigs
    _release_memory()
    new_msgs, validation = _validate(new_msgs, batch, settings, now)
    fb_rows = _check_feedback(batch, prev, set(rerun), new_msgs)
    _forget_quarantined(batch, erasure, dropped)

    counts = {k: batch.counts[k] for k in ("raw", "curated", "quarantined", "duplicates")}
    if counts["raw"] != counts["curated"] + counts["quarantined"] + counts["duplicates"]:
        raise IngestError(f"record accounting is off: {counts} (raw must equal curated + quarantined + duplicates)")
    fb = batch.feedback_counts
    if fb["raw"] != fb["curated"] + fb["quarantined"] + fb["duplicates"]:
        raise IngestError(f"feedback accounting is off: {dict(fb)}")

    _write_quarantine(lake, batch, parts)
    _check_batch(settings, counts, parts, state, batch)

    n_unanswered = unanswered(new_msgs)
    holder = [new_msgs]
    del new_msgs
    new_parts = _by_partition(holder, fb_rows, parts)
    new_parts.update(forget.rewrite(prev, drops))
    manifest = write_snapshot(lake, prev, new_parts, {
        "schema_version": SCHEMA_VERSION,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lake": lake.uri,
        "previous_snapshot": prev.id,
        "partitions": rerun,
        "sources": batch.sources,
        "empty_files": batch.empty_files,
        "counts": {**counts, "unanswered": n_unanswered, "erased": batch.counts["erased"],
                   "quarantined_by_reason": dict(sorted((+batch.reasons).items())),
                   "duplicates_by_kind": {k.split(".", 1)[1]: v for k, v in batch.counts.items()
                                          if k.startswith("duplicates.")}},
        "feedback_counts": {k: v for k, v in sorted(fb.items()) if v or "." not in k},
        "pii_redactions": dict(sorted(batch.pii.items())),
        "validation": validation.summary() if validation else None,
        "quarantine": sorted(_quarantine_key(by_name[n]) for n, lines in batch.rejections.items() if lines),
        "erasure": _erasure_summary(erasure, drops, superseded),
    })
    snapshot_id = manifest["snapshot_id"]
    lake.write_bytes(CURRENT_KEY, snapshot_id.encode())
    forget.mark_applied(lake, snapshot_id, erasure)
    for part in parts:
        lake.write_bytes(_state_key(part), json.dumps({
            "partition": part.name, "files": part.etags, "snapshot_id": snapshot_id,
            "raw": batch.raw_by_partition[part.name],
        }).encode())
    secs = max(time.monotonic() - started, 1e-6)
    log.info("snapshot %s: raw=%d curated=%d quarantined=%d duplicates=%d (quarantined by reason %s); "
             "total %d conversations in %d partition file(s); %.1fs, %.0f records/s", snapshot_id, counts["raw"],
             counts["curated"], counts["quarantined"], counts["duplicates"], dict(batch.reasons),
             manifest["totals"]["conversations"], len(manifest["parts"]), secs, (counts["raw"] + fb["raw"]) / secs)
    return {**manifest, "status": "ok"}


def _erasure_only(lake: Lake, prev: Snapshot, erasure: ErasureSet, pending: ErasureSet, now: datetime) -> dict:
    """No new landing data: apply the erasure requests the current snapshot is not clean of, if any."""
    drops = forget.snapshot_hits(prev, pending, set())
    if not drops:
        if prev.id and pending:
            forget.mark_applied(lake, prev.id, erasure)
        log.info("no new partitions under %s; CURRENT stays %s", lake.url("raw/"), prev.id)
        return {**prev.manifest, "status": "no_new_data", "snapshot_id": prev.id}
    manifest = write_snapshot(lake, prev, forget.rewrite(prev, drops), {
        "schema_version": SCHEMA_VERSION, "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "lake": lake.uri,
        "previous_snapshot": prev.id, "partitions": [], "sources": [],
        "counts": {"raw": 0, "curated": 0, "quarantined": 0, "duplicates": 0, "unanswered": 0, "erased": 0,
                   "quarantined_by_reason": {}},
        "erasure": _erasure_summary(erasure, drops, {}),
    })
    lake.write_bytes(CURRENT_KEY, manifest["snapshot_id"].encode())
    forget.mark_applied(lake, manifest["snapshot_id"], erasure)
    log.info("erasure: snapshot %s written without the subjects of %d request(s); partitions rewritten: %s",
             manifest["snapshot_id"], len(pending.request_ids), ", ".join(sorted(drops)))
    return {**manifest, "status": "erasure_applied"}


def _erasure_summary(erasure: ErasureSet, drops: dict[str, set[str]], superseded: dict[str, set[str]]) -> dict:
    """What the manifest says about erasure: requests applied, earlier partitions written again (counts)."""
    return {"applied": sorted(erasure.request_ids),
            "rewritten": {name: len(ids) for name, ids in sorted(drops.items())},
            "superseded_replies": {name: len(ids) for name, ids in sorted(superseded.items())}}


def _take(rows: pa.Table, convs: pa.Table, sizes: np.ndarray, sigs: np.ndarray, keep: np.ndarray):
    """The batch arrays restricted to the kept conversations (as they are when all are kept)."""
    if keep.all():
        return rows, convs, sizes, sigs
    return rows.filter(pa.array(np.repeat(keep, sizes))), convs.filter(pa.array(keep)), sizes[keep], sigs[keep]


def _count_duplicates(batch: Batch, kind: str, n: int) -> None:
    if n:
        batch.counts["duplicates"] += n
        batch.counts[f"duplicates.{kind}"] += n


def _forget(rows, convs, sizes, sigs, erasure: ErasureSet, batch: Batch, hits: dict[str, set[str]]):
    """Drop the batch's conversations (and feedback) that hold an erased subject; they count as `erased`,
    not as `raw`. Returns the arrays and the conversation ids whose feedback must go too."""
    keep = forget.conversation_keep(convs, rows, sizes, erasure)
    dropped = set(erasure.conversations).union(*hits.values())
    if not keep.all():
        dropped.update(convs["conversation_id"].filter(pa.array(~keep)).to_pylist())
        batch.counts["raw"] -= int((~keep).sum())
        batch.counts["erased"] += int((~keep).sum())
        rows, convs, sizes, sigs = _take(rows, convs, sizes, sigs, keep)
    if dropped and batch.feedback:
        kept = [ev for ev in batch.feedback if ev["conversation_id"] not in dropped]
        batch.feedback_counts["raw"] -= len(batch.feedback) - len(kept)
        batch.feedback_counts["erased"] += len(batch.feedback) - len(kept)
        batch.feedback = kept
    return rows, convs, sizes, sigs, dropped


def _forget_quarantined(batch: Batch, erasure: ErasureSet, dropped: set[str]) -> None:
    """Quarantine lines that name an erased subject are dropped (counted as erased, not as raw)."""
    if not erasure:
        return
    for name, lines in batch.rejections.items():
        kept = []
        for line in lines:
            if not forget.names_line(erasure, dropped, line):
                kept.append(line)
                continue
            counts = batch.counts if line["unit"] == "conversation" else batch.feedback_counts
            counts["raw"] -= 1
            counts["erased"] += 1
            counts["quarantined"] -= 1
            if line["unit"] == "conversation":
                batch.reasons[line["reason"]] -= 1
            else:
                counts[f"quarantined.{line['reason']}"] -= 1
        batch.rejections[name] = kept


def _seen_before(prev: Snapshot, skip: set[str], digests: list[str]) -> set[str]:
    """The content hashes of the batch that the snapshot already holds (its files scanned one by one)."""
    if not digests or not prev.parts:
        return set()
    values = pa.array(sorted(set(digests)))
    found: set[str] = set()
    for table in prev.scan(feedback=False, columns=["content_hash"], skip=skip):
        column = table["content_hash"]
        found.update(pc.unique(column.filter(pc.is_in(column, value_set=values))).to_pylist())
    return found


def _assemble(batch: Batch) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """Every conversation that passed curation, in job order: message rows, conversation table (source,
    partition, content hash...), messages per conversation, signatures. Takes the jobs' results out of
    the batch one by one, so their tables go as soon as their rows are joined."""
    convs = pa.concat_tables([CONVERSATION_PART.empty_table(), *(r.conversations for r in batch.curated)])
    sizes = np.concatenate([np.zeros(0, np.int32), *(r.sizes for r in batch.curated)])
    sigs = np.concatenate([np.zeros((0, NUM_PERM), np.uint32), *(r.signatures for r in batch.curated)])
    rows = [MESSAGE_SCHEMA.empty_table()]
    batch.curated.reverse()
    while batch.curated:
        res = batch.curated.pop()
        rows.append(res.rows())
        del res
    return pa.concat_tables(rows), convs, sizes, sigs


def _deduplicate(convs: pa.Table, sigs: np.ndarray, batch: Batch, prev: Snapshot, skip: set[str]) -> np.ndarray:
    """Exact duplicates (also of the snapshot) and near duplicates (within a partition, so that a day's
    outcome does not depend on which days share the run); one flag per conversation: kept."""
    started = time.monotonic()
    digests = convs["content_hash"].to_pylist()
    dedup = Deduplicator(known=_seen_before(prev, skip, digests))
    status = dedup.resolve(digests, sigs, groups=convs["partition"].to_pylist())
    keep = np.fromiter((s is None for s in status), dtype=bool, count=len(status))
    for kind, n in Counter(s for s in status if s).items():
        _count_duplicates(batch, kind, n)
    batch.counts["curated"] += int(keep.sum())
    log.info("de-duplication: %d conversations kept, %d exact and %d near duplicates (%.1fs)", int(keep.sum()),
             batch.counts["duplicates.exact"], batch.counts["duplicates.near"], time.monotonic() - started)
    return keep


def _validate(new_msgs: pa.Table, batch: Batch, settings: Settings, now: datetime):
    """Great Expectations over the new message rows. Rows that fail quarantine their conversation, found
    by its source location (`file:line`: unique, where conversation ids may repeat in a batch)."""
    if not new_msgs.num_rows:
        return new_msgs, None
    frame = new_msgs.to_pandas()
    validation = validate_messages(frame, gx_root=settings.data_docs_dir, max_chars=settings.max_message_chars,
                                   run_name=f"ingest-{now:%Y%m%dT%H%M%S}")
    if validation.failed_rows:
        bad: dict[str, set[str]] = {}
        for idx, names in validation.failed_rows.items():
            bad.setdefault(frame.at[idx, "source"], set()).update(names)
        for source, group in frame[frame["source"].isin(bad)].groupby("source", sort=False):
            first = group.iloc[0]
            key, _, line = source.rpartition(":")
            batch.counts["curated"] -= 1
            batch.quarantine(first["partition"], Rejection(
                "validation_failed", f"{source}: failed {', '.join(sorted(bad[source]))}", key, int(line),
                group.drop(columns=["content_hash", "split"]).to_dict("records")), unit="conversation")
        new_msgs = new_msgs.filter(pc.invert(pc.is_in(new_msgs["source"], value_set=pa.array(sorted(bad)))))
    del frame
    gc.collect()  # GX leaves its batch and metric caches in reference cycles
    _release_memory()
    log.info("validation: %s (%s) - Data Docs: %s", "passed" if validation.success else "row failures quarantined",
             validation.statistics, validation.data_docs)
    return new_msgs, validation


def _check_feedback(batch: Batch, prev: Snapshot, skip: set[str], new_msgs: pa.Table) -> list[dict]:
    """Feedback must point at a curated message; an event id counts once. Only the conversations and
    events the batch refers to are looked up in the snapshot's files."""
    if not batch.feedback:
        return []
    wanted = pa.array(sorted({ev["conversation_id"] for ev in batch.feedback}))
    known: set[tuple[str, str]] = set()
    for table in itertools.chain(prev.scan(feedback=False, columns=["conversation_id", "message_id"], skip=skip),
                                 [new_msgs]):
        rows = table.filter(pc.is_in(table["conversation_id"], value_set=wanted))
        known.update(zip(rows["conversation_id"].to_pylist(), rows["message_id"].to_pylist()))
    events = pa.array(sorted({ev["event_id"] for ev in batch.feedback}))
    seen_events: set[str] = set()
    for table in prev.scan(feedback=True, columns=["event_id"], skip=skip):
        seen_events.update(table.filter(pc.is_in(table["event_id"], value_set=events))["event_id"].to_pylist())
    fb_rows = []
    for ev in batch.feedback:
        if ev["event_id"] in seen_events:
            batch.feedback_counts["duplicates"] += 1
            continue
        if (ev["conversation_id"], ev["message_id"]) not in known:
            batch.quarantine(ev["partition"], Rejection(
                "unknown_conversation", f"{ev['_source']}:{ev['_line']}: message {ev['message_id']} of conversation "
                f"{ev['conversation_id']} is not in the curated data", ev["_source"], ev["_line"], ev["_raw"]),
                unit="feedback")
            continue
        seen_events.add(ev["event_id"])
        fb_rows.append({k: v for k, v in ev.items() if not k.startswith("_")})
        batch.feedback_counts["curated"] += 1
    return fb_rows


def _quarantine_key(part: Partition) -> str:
    return f"{QUARANTINE_PREFIX}/dt={part.dt}/{part.kind}.jsonl"


def _write_quarantine(lake: Lake, batch: Batch, parts: list[Partition]) -> None:
    for part in parts:
        lines = batch.rejections.get(part.name)
        key = _quarantine_key(part)
        if lines:
            body = "\n".join(json.dumps(line, ensure_ascii=False, default=str) for line in lines) + "\n"
            lake.write_bytes(key, body.encode())
            log.warning("quarantined %d record(s) of %s -> %s", len(lines), part.name, lake.url(key))
        elif lake.exists(key):
            lake.delete(key)  # a re-run that fixed everything leaves no stale quarantine behind


def _check_batch(settings: Settings, counts: dict, parts: list[Partition], state: dict, batch: Batch) -> None:
    """Batch-level gates: quarantine rate and volume against the recent partitions."""
    raw = counts["raw"]
    if raw and counts["quarantined"] / raw > settings.max_quarantine_rate:
        top = ", ".join(f"{r}={n}" for r, n in batch.reasons.most_common(3))
        raise IngestError(f"quarantine rate {counts['quarantined'] / raw:.0%} is above the limit "
                          f"{settings.max_quarantine_rate:.0%} ({counts['quarantined']} of {raw}; top reasons: {top}); "
                          f"see {', '.join(_quarantine_key(p) for p in parts)}. CURRENT was not changed.")
    history = [s["raw"] for name, s in state.items() if not name.startswith("feedback/") and s.get("raw")]
    conv_parts = [p for p in parts if p.kind in CONVERSATION_KINDS]
    if len(history) >= 3 and conv_parts and raw:
        recent = sum(history[-7:]) / len(history[-7:])
        per_part = raw / len(conv_parts)
        factor = settings.volume_factor
        if per_part > recent * factor or per_part < recent / factor:
            raise IngestError(f"volume check failed: {per_part:.0f} records per partition against a recent average "
                              f"of {recent:.0f} (allowed factor {factor}); set REPLYLOOP_VOLUME_FACTOR to accept it. "
                              "CURRENT was not changed.")
