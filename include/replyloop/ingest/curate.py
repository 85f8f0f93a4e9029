"""Per-record curation: the part of ingestion that runs in parallel.

A `Job` is one landing file (canonical JSONL or feedback), or one whole TWCS partition (its threads span
files). `run_job` reads the input as a stream and, record by record: normalises, redacts PII, checks the
conversation rules and the contamination guard, and computes the content hash and MinHash signature.
It returns a `Curated` result: the message rows of the conversations that passed (an Arrow table, in
input order), their hashes and signatures, feedback events and quarantine lines. De-duplication, Great
Expectations and the snapshot happen in the parent, over the results of all jobs in order, so the
outcome does not depend on how many workers ran.

Jobs run in worker processes started with `spawn` (safe under Airflow's task runner, which holds threads),
so a job carries only picklable values: the lake, the keys and a `CurateConfig`.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa

from replyloop import resources
from replyloop.contract import MESSAGE_SCHEMA
from replyloop.ingest.dedup import ContaminationGuard, Sketcher, content_hash, sketch_tokens, words
from replyloop.ingest.normalize import RecordError, check_conversation, normalize_conversation, normalize_feedback
from replyloop.pii import PiiRedactor
from replyloop.ingest.readers import TWCS_COLUMNS, IngestError, RawRecord, Rejection, csv_header, read_jsonl, read_twcs_csv
from replyloop.ingest.twcs import build_threads
from replyloop.lake import Lake


@dataclass(frozen=True)
class CurateConfig:
    now: datetime
    max_chars: int
    eval_fraction: float
    brand_handle: str


@dataclass(frozen=True)
class Job:
    lake: Lake
    kind: str  # a key of contract.RAW_PREFIXES
    partition: str  # "<kind>/dt=YYYY-MM-DD"
    keys: tuple[str, ...]
    config: CurateConfig


# Curated rows travel in two tables: conversation fields once per conversation, message fields once per
# message. They are joined into MESSAGE_SCHEMA rows only for the conversations that survive
# de-duplication, which keeps both the transfer from the workers and the parent's memory small.
CONVERSATION_FIELDS = ("conversation_id", "platform", "channel", "language", "conversation_created_at", "source",
                       "partition", "content_hash", "split")
MESSAGE_FIELDS = tuple(name for name in MESSAGE_SCHEMA.names if name not in CONVERSATION_FIELDS)
CONVERSATION_PART = pa.schema([MESSAGE_SCHEMA.field(name) for name in CONVERSATION_FIELDS])
MESSAGE_PART = pa.schema([MESSAGE_SCHEMA.field(name) for name in MESSAGE_FIELDS])


@dataclass
class Curated:
    """What one job produced. Conversations are in input order; `sizes` maps them to message rows."""

    partition: str
    conversations: pa.Table  # CONVERSATION_PART, one row per passing conversation
    messages: pa.Table  # MESSAGE_PART, one row per message of those
    sizes: np.ndarray  # messages per passing conversation
    signatures: np.ndarray  # (passing conversations, NUM_PERM) uint32
    feedback: list[dict] = field(default_factory=list)
    rejections: list[dict] = field(default_factory=list)  # quarantine lines
    raw: int = 0  # conversation records read (TWCS: threads and unplaceable tweets)
    feedback_raw: int = 0
    reasons: Counter = field(default_factory=Counter)
    feedback_reasons: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    files: list[tuple[str, int]] = field(default_factory=list)  # (key, items read)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return self.raw + self.feedback_raw

    def rows(self) -> pa.Table:
        """The MESSAGE_SCHEMA rows: conversation fields repeated on each of their messages."""
        expanded = self.conversations.take(pa.array(np.repeat(np.arange(len(self.sizes)), self.sizes)))
        columns = [expanded.column(name) if name in CONVERSATION_FIELDS else self.messages.column(name)
                   for name in MESSAGE_SCHEMA.names]
        return pa.Table.from_arrays(columns, schema=MESSAGE_SCHEMA)


def split_of(conversation_id: str, eval_fraction: float) -> str:
    """'eval' or 'train', fixed for a conversation id (a hash bucket), so re-runs never move one."""
    bucket = int(hashlib.sha1(conversation_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if bucket < eval_fraction else "train"


class _Output:
    """Accumulates one job's rows column by column (a dict per message costs ~1 KB at 1M rows)."""

    def __init__(self, partition: str):
        self.partition = partition
        self.conversations: dict[str, list] = {name: [] for name in CONVERSATION_FIELDS}
        self.messages: dict[str, list] = {name: [] for name in MESSAGE_FIELDS}
        self.sizes: list[int] = []
        self.sketcher = Sketcher()
        self.result = Curated(partition, CONVERSATION_PART.empty_table(), MESSAGE_PART.empty_table(),
                              np.zeros(0, np.int32), np.zeros((0, 0), np.uint32))

    def reject(self, rej: Rejection, *, unit: str = "conversation") -> None:
        self.result.rejections.append(rej.quarantine_line(self.partition, unit))
        if unit == "conversation":
            self.result.reasons[rej.reason] += 1
        else:
            self.result.feedback_reasons[rej.reason] += 1

    def add(self, conv: dict, source: str, split: str, digest: str, conversation_words: list[str]) -> None:
        msgs, convs, cols = conv["messages"], self.conversations, self.messages
        for name, value in (("conversation_id", conv["conversation_id"]), ("platform", conv["platform"]),
                            ("channel", conv["channel"]), ("language", conv["language"]),
                            ("conversation_created_at", conv["created_at"]), ("source", source),
                            ("partition", self.partition), ("content_hash", digest), ("split", split)):
            convs[name].append(value)
        cols["turn"].extend(range(len(msgs)))
        for name in ("message_id", "role", "author_id", "text", "created_at"):
            cols[name].extend([m[name] for m in msgs])
        self.sizes.append(len(msgs))
        self.sketcher.add(conversation_words)

    def finish(self, started: float) -> Curated:
        res = self.result
        res.conversations = pa.table(self.conversations, schema=CONVERSATION_PART)
        res.messages = pa.table(self.messages, schema=MESSAGE_PART)
        res.sizes = np.asarray(self.sizes, dtype=np.int32)
        res.signatures = self.sketcher.signatures()
        res.seconds = time.perf_counter() - started
        return res


class Curator:
    """The per-record work; one per worker process (the redactor and guard are built once)."""

    def __init__(self, config: CurateConfig):
        self.config = config
        self.redactor = PiiRedactor(keep_handles=[config.brand_handle])
        self.guard = ContaminationGuard(resources.protected_prompts())

    def run(self, job: Job) -> Curated:
        started = time.perf_counter()
        out = _Output(job.partition)
        if job.kind == "twcs":
            self._twcs(job, out)
        else:
            for key in job.keys:
                n = 0
                for item in read_jsonl(job.lake, key):
                    n += 1
                    if job.kind == "feedback":
                        self.feedback(item, out)
                    else:
                        self.conversation(item, out)
                out.result.files.append((key, n))
        return out.finish(started)

    def _twcs(self, job: Job, out: _Output) -> None:
        rows: list[RawRecord] = []
        for key in job.keys:
            header = csv_header(job.lake, key)
            missing = sorted(set(TWCS_COLUMNS) - {h.strip() for h in header}) if header is not None else []
            if missing:
                raise IngestError(f"schema change in {job.lake.url(key)}: missing column(s) {', '.join(missing)}; "
                                  f"expected {','.join(TWCS_COLUMNS)}")
            n = 0
            for item in read_twcs_csv(job.lake, key):
                n += 1
                if isinstance(item, Rejection):
                    self.conversation(item, out)
                else:
                    rows.append(item)
            out.result.files.append((key, n))
        for item in build_threads(rows):
            self.conversation(item, out)

    def conversation(self, record: RawRecord | Rejection, out: _Output) -> None:
        out.result.raw += 1
        if isinstance(record, Rejection):
            out.reject(record)
            return
        cfg = self.config
        try:
            conv = normalize_conversation(record.data, now=cfg.now, max_chars=cfg.max_chars)
            per_message = []
            for msg in conv["messages"]:
                text, found = self.redactor.redact(msg["text"])
                if found:
                    out.result.pii.update(found)
                    # Unchanged text was just scanned by the same detectors; redacted text is scanned
                    # again, in case a replacement brought pieces together into something new.
                    leaks = self.redactor.find(text)
                    if leaks:
                        raise RecordError("pii_leak", f"message {msg['message_id']}: {leaks[0].kind} survived "
                                                      "redaction")
                    msg["text"] = text
                per_message.append(words(text))
            check_conversation(conv)
            hit = self.guard.hit(conv, per_message)
            if hit:
                raise RecordError("eval_contamination", f"customer text matches a protected eval prompt: {hit[:80]!r}")
        except RecordError as err:
            out.reject(Rejection(err.reason, f"{record.source}:{record.line}: {err}", record.source, record.line,
                                 record.data))
            return
        out.add(conv, f"{record.source}:{record.line}", split_of(conv["conversation_id"], cfg.eval_fraction),
                content_hash(conv), sketch_tokens(per_message, [m["text"] for m in conv["messages"]]))

    def feedback(self, record: RawRecord | Rejection, out: _Output) -> None:
        out.result.feedback_raw += 1
        if isinstance(record, Rejection):
            out.reject(record, unit="feedback")
            return
        try:
            event = normalize_feedback(record.data, now=self.config.now, max_chars=self.config.max_chars)
            if event["correction"]:
                event["correction"], found = self.redactor.redact(event["correction"])
                out.result.pii.update(found)
        except RecordError as err:
            out.reject(Rejection(err.reason, f"{record.source}:{record.line}: {err}", record.source, record.line,
                                 record.data), unit="feedback")
            return
        out.result.feedback.append({**event, "partition": out.partition, "_source": record.source,
                                    "_line": record.line, "_raw": record.data})


_CURATORS: dict[CurateConfig, Curator] = {}


def run_job(job: Job) -> Curated:
    """Entry point of a worker (or of the parent, when ingestion runs in one process)."""
    curator = _CURATORS.get(job.config)
    if curator is None:
        _CURATORS.clear()
        curator = _CURATORS[job.config] = Curator(job.config)
    return curator.run(job)
