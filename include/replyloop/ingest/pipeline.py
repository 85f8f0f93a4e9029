"""The ingestion run: landing partitions in, one immutable curated snapshot (or a clear failure) out.

    discover -> read -> normalise -> redact PII -> contamination guard -> de-duplicate
             -> validate (GX) -> quarantine / snapshot -> manifest

Incremental by day: a partition (`raw/<kind>/dt=YYYY-MM-DD`) is read once; `date=` re-reads one day.
The new snapshot is the previous one with the rows of the re-read partitions replaced, so re-running a
day yields the same snapshot id. Every raw record ends up curated, quarantined or counted as duplicate.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from replyloop import resources
from replyloop.contract import (CURATED_PREFIX, CURRENT_KEY, FEEDBACK_SCHEMA, MESSAGE_SCHEMA, QUARANTINE_PREFIX,
                                RAW_PREFIXES, SCHEMA_VERSION, STATE_PREFIX)
from replyloop.ingest.dedup import ContaminationGuard, Deduplicator, content_hash
from replyloop.ingest.normalize import RecordError, check_conversation, normalize_conversation, normalize_feedback
from replyloop.ingest.pii import PiiRedactor, find_leaks
from replyloop.ingest.readers import TWCS_COLUMNS, RawRecord, Rejection, csv_header, read_jsonl, read_twcs_csv
from replyloop.ingest.twcs import build_threads
from replyloop.ingest.validate import validate_messages
from replyloop.lake import Lake, lake_for
from replyloop.settings import Settings, get_settings

log = logging.getLogger(__name__)
_DT = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")
CONVERSATION_KINDS = ("conversations", "twcs")


class IngestError(RuntimeError):
    """The run cannot go on; the message names the file, partition or setting. Nothing was replaced."""


@dataclass
class Partition:
    kind: str
    dt: str
    keys: list[str]
    etags: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.kind}/dt={self.dt}"


@dataclass
class Batch:
    """What one run gathered before the snapshot is written."""

    # message rows of accepted conversations, column by column (a dict per message costs ~1 KB at 1M rows)
    columns: dict[str, list] = field(default_factory=lambda: {name: [] for name in MESSAGE_SCHEMA.names})
    feedback: list[dict] = field(default_factory=list)
    rejections: dict[str, list[dict]] = field(default_factory=dict)  # partition name -> quarantine lines
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    feedback_counts: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    sources: list[dict] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    raw_by_partition: Counter = field(default_factory=Counter)

    def quarantine(self, part: Partition, rej: Rejection, *, unit: str = "conversation") -> None:
        self.rejections.setdefault(part.name, []).append({**rej.to_json(), "partition": part.name, "unit": unit})
        if unit == "conversation":
            self.counts["quarantined"] += 1
            self.reasons[rej.reason] += 1
        else:
            self.feedback_counts["quarantined"] += 1
            self.feedback_counts[f"quarantined.{rej.reason}"] += 1


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
            part = parts.setdefault((kind, m.group(1)), Partition(kind, m.group(1), [], {}))
            part.keys.append(obj.key)
            part.etags[obj.key] = obj.etag
    chosen = [p for p in parts.values() if date or (p.name not in done and p.dt < today)]
    return sorted(chosen, key=lambda p: (p.dt, list(RAW_PREFIXES).index(p.kind)))


def _state_key(part: Partition) -> str:
    return f"{STATE_PREFIX}/{part.kind}/dt={part.dt}.json"


def _ingested(lake: Lake) -> dict[str, dict]:
    out = {}
    for obj in lake.list(f"{STATE_PREFIX}/"):
        state = json.loads(lake.read_bytes(obj.key))
        out[state["partition"]] = state
    return out


# -- per-record work -----------------------------------------------------------------------------------

def _split_of(conversation_id: str, eval_fraction: float) -> str:
    bucket = int(hashlib.sha1(conversation_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if bucket < eval_fraction else "train"


class _Curator:
    def __init__(self, settings: Settings, now: datetime, previous_hashes: set[str]):
        self.settings = settings
        self.now = now
        self.redactor = PiiRedactor(keep_handles=[settings.brand_handle])
        self.guard = ContaminationGuard(resources.protected_prompts())
        self.dedup = Deduplicator()
        for digest in previous_hashes:
            self.dedup.add_hash(digest)

    def conversation(self, record: RawRecord, part: Partition, batch: Batch) -> None:
        batch.counts["raw"] += 1
        try:
            conv = normalize_conversation(record.data, now=self.now, max_chars=self.settings.max_message_chars)
            for msg in conv["messages"]:
                msg["text"], found = self.redactor.redact(msg["text"])
                batch.pii.update(found)
                leaks = find_leaks(msg["text"])
                if leaks:
                    raise RecordError("pii_leak", f"message {msg['message_id']}: {leaks[0].kind} survived redaction")
            check_conversation(conv)
            hit = self.guard.hit(conv)
            if hit:
                raise RecordError("eval_contamination", f"customer text matches a protected eval prompt: {hit[:80]!r}")
        except RecordError as err:
            batch.quarantine(part, Rejection(err.reason, f"{record.source}:{record.line}: {err}", record.source,
                                             record.line, record.data))
            return
        digest = content_hash(conv)
        dup = self.dedup.check(conv, digest)
        if dup:
            batch.counts["duplicates"] += 1
            batch.counts[f"duplicates.{dup}"] += 1
            return
        split = _split_of(conv["conversation_id"], self.settings.eval_fraction)
        cols, source = batch.columns, f"{record.source}:{record.line}"
        for turn, msg in enumerate(conv["messages"]):
            for name, value in (("conversation_id", conv["conversation_id"]), ("platform", conv["platform"]),
                                ("channel", conv["channel"]), ("language", conv["language"]),
                                ("conversation_created_at", conv["created_at"]), ("turn", turn),
                                ("message_id", msg["message_id"]), ("role", msg["role"]),
                                ("author_id", msg["author_id"]), ("text", msg["text"]),
                                ("created_at", msg["created_at"]), ("source", source), ("partition", part.name),
                                ("content_hash", digest), ("split", split)):
                cols[name].append(value)
        batch.counts["curated"] += 1

    def feedback(self, record: RawRecord, part: Partition, batch: Batch) -> None:
        batch.feedback_counts["raw"] += 1
        try:
            event = normalize_feedback(record.data, now=self.now, max_chars=self.settings.max_message_chars)
            if event["correction"]:
                event["correction"], found = self.redactor.redact(event["correction"])
                batch.pii.update(found)
        except RecordError as err:
            batch.quarantine(part, Rejection(err.reason, f"{record.source}:{record.line}: {err}", record.source,
                                             record.line, record.data), unit="feedback")
            return
        batch.feedback.append({**event, "partition": part.name, "_source": record.source, "_line": record.line,
                               "_raw": record.data})


def _read_partition(lake: Lake, part: Partition, curator: _Curator, batch: Batch) -> None:
    started, before = time.monotonic(), batch.counts["raw"] + batch.feedback_counts["raw"]
    twcs_rows: list[RawRecord] = []
    for key in sorted(part.keys):
        n = 0
        if part.kind == "twcs":
            header = csv_header(lake, key)
            missing = sorted(set(TWCS_COLUMNS) - {h.strip() for h in header}) if header is not None else []
            if missing:
                raise IngestError(f"schema change in {lake.url(key)}: missing column(s) {', '.join(missing)}; "
                                  f"expected {','.join(TWCS_COLUMNS)}")
            items = read_twcs_csv(lake, key)
        else:
            items = read_jsonl(lake, key)
        for item in items:
            n += 1
            if isinstance(item, Rejection):
                if part.kind == "feedback":
                    batch.feedback_counts["raw"] += 1
                    batch.quarantine(part, item, unit="feedback")
                else:
                    batch.counts["raw"] += 1
                    batch.quarantine(part, item)
            elif part.kind == "twcs":
                twcs_rows.append(item)
            elif part.kind == "feedback":
                curator.feedback(item, part, batch)
            else:
                curator.conversation(item, part, batch)
        batch.sources.append({"key": key, "etag": part.etags.get(key), "items": n})
        if n == 0:
            batch.empty_files.append(key)
            log.warning("empty file: %s (no records)", lake.url(key))
    for item in build_threads(twcs_rows):
        if isinstance(item, Rejection):
            batch.counts["raw"] += 1
            batch.quarantine(part, item)
        else:
            curator.conversation(item, part, batch)
    done = batch.counts["raw"] + batch.feedback_counts["raw"] - before
    batch.raw_by_partition[part.name] = done
    secs = max(time.monotonic() - started, 1e-6)
    log.info("read %s: %d records from %d file(s) in %.1fs (%.0f records/s)", part.name, done, len(part.keys),
             secs, done / secs)


# -- snapshot ------------------------------------------------------------------------------------------

def read_snapshot(lake: Lake, snapshot_id: str | None = None) -> tuple[str | None, pd.DataFrame, pd.DataFrame]:
    """(snapshot id, messages, feedback) of a snapshot, CURRENT by default; empty frames when none."""
    if snapshot_id is None:
        snapshot_id = lake.read_bytes(CURRENT_KEY).decode().strip() if lake.exists(CURRENT_KEY) else None
    if snapshot_id is None:
        return None, MESSAGE_SCHEMA.empty_table().to_pandas(), FEEDBACK_SCHEMA.empty_table().to_pandas()
    base = f"{CURATED_PREFIX}/{snapshot_id}"
    messages = pq.read_table(io.BytesIO(lake.read_bytes(f"{base}/messages.parquet"))).to_pandas()
    feedback = pq.read_table(io.BytesIO(lake.read_bytes(f"{base}/feedback.parquet"))).to_pandas()
    return snapshot_id, messages, feedback


def read_manifest(lake: Lake, snapshot_id: str | None = None) -> dict | None:
    if snapshot_id is None:
        if not lake.exists(CURRENT_KEY):
            return None
        snapshot_id = lake.read_bytes(CURRENT_KEY).decode().strip()
    return json.loads(lake.read_bytes(f"{CURATED_PREFIX}/{snapshot_id}/manifest.json"))


def _table(rows: list[dict] | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=schema.names)
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _hash_frames(*frames: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(",".join(frame.columns).encode())
        h.update(pd.util.hash_pandas_object(frame.astype("string"), index=False).values.tobytes())
    return h.hexdigest()[:16]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# -- the run -------------------------------------------------------------------------------------------

def run_ingest(settings: Settings | None = None, *, date: str | None = None, lake: Lake | None = None,
               now: datetime | None = None) -> dict:
    """Ingest new (or the given day's) landing partitions; return the manifest of the resulting snapshot.

    Raises IngestError for batch-level problems (no data for a requested day, schema change, volume or
    quarantine rate out of bounds); the CURRENT snapshot is left as it was.
    """
    settings = settings or get_settings()
    lake = lake or lake_for(settings)
    now = now or datetime.now(UTC)
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
    prev_id, prev_msgs, prev_fb = read_snapshot(lake)
    if not parts:
        log.info("no new partitions under %s; CURRENT stays %s", lake.url("raw/"), prev_id)
        manifest = read_manifest(lake) or {}
        return {**manifest, "status": "no_new_data", "snapshot_id": prev_id}

    rerun = {p.name for p in parts}
    keep_msgs = prev_msgs[~prev_msgs["partition"].isin(rerun)]
    keep_fb = prev_fb[~prev_fb["partition"].isin(rerun)]
    log.info("ingesting %d partition(s) into %s: %s", len(parts), lake.uri, ", ".join(sorted(rerun)))

    batch = Batch()
    curator = _Curator(settings, now, set(keep_msgs["content_hash"].unique()))
    for part in parts:
        _read_partition(lake, part, curator, batch)
    by_name = {p.name: p for p in parts}
    if batch.counts["raw"] + batch.feedback_counts["raw"] == 0:
        raise IngestError(f"landing partition(s) {', '.join(sorted(rerun))} hold no records: "
                          f"{', '.join(lake.url(k) for k in batch.empty_files)} "
                          f"{'is' if len(batch.empty_files) == 1 else 'are'} empty. CURRENT was not changed.")

    # Great Expectations over the new message rows; failing rows quarantine their whole conversation.
    new_msgs = pd.DataFrame(batch.columns, columns=MESSAGE_SCHEMA.names)
    batch.columns = {}
    validation = None
    if len(new_msgs):
        validation = validate_messages(new_msgs, gx_root=settings.data_docs_dir,
                                       max_chars=settings.max_message_chars, run_name=f"ingest-{now:%Y%m%dT%H%M%S}")
        if validation.failed_rows:
            bad: dict[str, set[str]] = {}
            for idx, names in validation.failed_rows.items():
                bad.setdefault(new_msgs.at[idx, "conversation_id"], set()).update(names)
            for conv_id, names in bad.items():
                rows = new_msgs[new_msgs["conversation_id"] == conv_id]
                first = rows.iloc[0]
                source, _, line = first["source"].rpartition(":")
                batch.counts["curated"] -= 1
                batch.quarantine(by_name[first["partition"]], Rejection(
                    "validation_failed", f"{first['source']}: failed {', '.join(sorted(names))}", source,
                    int(line), rows.drop(columns=["content_hash", "split"]).to_dict("records")))
            new_msgs = new_msgs[~new_msgs["conversation_id"].isin(bad)]
        log.info("validation: %s (%s) - Data Docs: %s", "passed" if validation.success else "row failures quarantined",
                 validation.statistics, validation.data_docs)

    # Feedback must point at a known agent message.
    all_msgs = pd.concat([keep_msgs, new_msgs], ignore_index=True)
    known = set(zip(all_msgs["conversation_id"], all_msgs["message_id"]))
    seen_events = set(keep_fb["event_id"])
    fb_rows = []
    for ev in batch.feedback:
        part = by_name[ev["partition"]]
        if ev["event_id"] in seen_events:
            batch.feedback_counts["duplicates"] += 1
            continue
        if (ev["conversation_id"], ev["message_id"]) not in known:
            batch.quarantine(part, Rejection(
                "unknown_conversation", f"{ev['_source']}:{ev['_line']}: message {ev['message_id']} of conversation "
                f"{ev['conversation_id']} is not in the curated data", ev["_source"], ev["_line"], ev["_raw"]),
                unit="feedback")
            continue
        seen_events.add(ev["event_id"])
        fb_rows.append({k: v for k, v in ev.items() if not k.startswith("_")})
        batch.feedback_counts["curated"] += 1

    counts = {k: batch.counts[k] for k in ("raw", "curated", "quarantined", "duplicates")}
    if counts["raw"] != counts["curated"] + counts["quarantined"] + counts["duplicates"]:
        raise IngestError(f"record accounting is off: {counts} (raw must equal curated + quarantined + duplicates)")
    fb = batch.feedback_counts
    if fb["raw"] != fb["curated"] + fb["quarantined"] + fb["duplicates"]:
        raise IngestError(f"feedback accounting is off: {dict(fb)}")

    _write_quarantine(lake, batch, parts)
    _check_batch(settings, counts, parts, state, batch)

    messages = pd.concat([keep_msgs, new_msgs], ignore_index=True).sort_values(
        ["conversation_id", "turn"], kind="stable").reset_index(drop=True)
    feedback = pd.concat([keep_fb, pd.DataFrame(fb_rows, columns=FEEDBACK_SCHEMA.names)], ignore_index=True
                         ).sort_values("event_id", kind="stable").reset_index(drop=True)
    msg_table, fb_table = _table(messages, MESSAGE_SCHEMA), _table(feedback, FEEDBACK_SCHEMA)
    snapshot_id = _hash_frames(messages[MESSAGE_SCHEMA.names], feedback[FEEDBACK_SCHEMA.names])
    manifest = {
        "snapshot_id": snapshot_id,
        "schema_version": SCHEMA_VERSION,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lake": lake.uri,
        "previous_snapshot": prev_id,
        "partitions": sorted(rerun),
        "sources": batch.sources,
        "empty_files": batch.empty_files,
        "counts": {**counts, "quarantined_by_reason": dict(sorted(batch.reasons.items())),
                   "duplicates_by_kind": {k.split(".", 1)[1]: v for k, v in batch.counts.items()
                                          if k.startswith("duplicates.")}},
        "feedback_counts": {k: v for k, v in sorted(fb.items())},
        "pii_redactions": dict(sorted(batch.pii.items())),
        "validation": validation.summary() if validation else None,
        "quarantine": sorted(_quarantine_key(by_name[n]) for n in batch.rejections),
        "totals": {"conversations": int(messages["conversation_id"].nunique()), "messages": len(messages),
                   "train_conversations": int(messages.loc[messages["split"] == "train", "conversation_id"].nunique()),
                   "eval_conversations": int(messages.loc[messages["split"] == "eval", "conversation_id"].nunique()),
                   "feedback_events": len(feedback)},
    }
    base = f"{CURATED_PREFIX}/{snapshot_id}"
    if not lake.exists(f"{base}/manifest.json"):  # immutable: an existing snapshot is never rewritten
        lake.write_bytes(f"{base}/messages.parquet", _parquet_bytes(msg_table))
        lake.write_bytes(f"{base}/feedback.parquet", _parquet_bytes(fb_table))
        lake.write_bytes(f"{base}/manifest.json", json.dumps(manifest, indent=2).encode())
    else:
        manifest = {**json.loads(lake.read_bytes(f"{base}/manifest.json")), "reingested": manifest}
    lake.write_bytes(CURRENT_KEY, snapshot_id.encode())
    for part in parts:
        lake.write_bytes(_state_key(part), json.dumps({
            "partition": part.name, "files": part.etags, "snapshot_id": snapshot_id,
            "raw": batch.raw_by_partition[part.name],
        }).encode())
    log.info("snapshot %s: raw=%d curated=%d quarantined=%d duplicates=%d (quarantined by reason %s); "
             "total %d conversations", snapshot_id, counts["raw"], counts["curated"], counts["quarantined"],
             counts["duplicates"], dict(batch.reasons), manifest["totals"]["conversations"])
    return {**manifest, "status": "ok"}


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
