"""Erasure requests: recorded in an append-only log, applied by every later ingestion.

    privacy/erasures/<requested_at>-<request_id>.json   one request: who asked, when, which ids (no text)

A subject is an author (the platform user id as landed, `messages[].author_id`) or a conversation id.
Ingestion loads every request (`ErasureSet.load`) and drops, before anything is counted or stored:
conversations with the subject's id or with any message the author wrote, the feedback on them, and the
quarantine lines that name them. The partitions of the previous snapshot that still hold a subject of a
request not yet applied are written again without them (the manifest lists the requests it applied).
Matching a table is a set lookup on its id columns (Arrow `is_in`), never a loop over rows.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replyloop.contract import ERASURE_KINDS, ERASURE_PREFIX, SERVED_AUTHOR_PREFIX
from replyloop.lake import Lake


class ErasureError(ValueError):
    """A request cannot be recorded as given (the message names the file, line or id); nothing was recorded."""


@dataclass(frozen=True)
class ErasureSet:
    """The subjects of a set of requests."""

    authors: frozenset[str] = frozenset()
    conversations: frozenset[str] = frozenset()
    request_ids: frozenset[str] = frozenset()
    records: tuple[dict, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def load(cls, lake: Lake) -> ErasureSet:
        """Every request of the log."""
        records = tuple(json.loads(lake.read_bytes(obj.key)) for obj in lake.list(f"{ERASURE_PREFIX}/")
                        if obj.key.endswith(".json"))
        return cls.of(records)

    @classmethod
    def of(cls, records: Iterable[dict]) -> ErasureSet:
        records = tuple(records)
        ids = {kind: frozenset(s["id"] for r in records for s in r["subjects"] if s["kind"] == kind)
               for kind in ERASURE_KINDS}
        return cls(ids["author"], ids["conversation"], frozenset(r["request_id"] for r in records), records)

    def without(self, applied: Iterable[str]) -> ErasureSet:
        """The requests not in `applied` (those a snapshot has not been cleaned of yet)."""
        applied = set(applied)
        return ErasureSet.of(r for r in self.records if r["request_id"] not in applied)

    def __bool__(self) -> bool:
        return bool(self.authors or self.conversations)

    @cached_property
    def _author_values(self) -> pa.Array:
        return pa.array(sorted(self.authors), pa.string())

    @cached_property
    def _conversation_values(self) -> pa.Array:
        return pa.array(sorted(self.conversations), pa.string())

    # -- tables (vectorised) ------------------------------------------------------------------------

    def author_rows(self, author_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """One flag per message row: written by an erased author."""
        hit = pc.is_in(author_ids, value_set=self._author_values)
        return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)

    def hit_conversations(self, table: pa.Table) -> set[str]:
        """The conversation ids of a message table (conversation_id, author_id) that hold a subject."""
        if not self or not table.num_rows:
            return set()
        ids = table["conversation_id"]
        hit = pc.or_(pc.is_in(ids, value_set=self._conversation_values),
                     pc.is_in(table["author_id"], value_set=self._author_values))
        return set(pc.unique(ids.filter(hit)).to_pylist())

    def conversation_flags(self, conversation_ids: pa.Array, author_ids: pa.Array, sizes: np.ndarray) -> np.ndarray:
        """One flag per conversation of a batch (rows grouped by conversation, `sizes` rows each): erased."""
        flags = np.asarray(pc.is_in(conversation_ids, value_set=self._conversation_values)
                           .to_numpy(zero_copy_only=False), dtype=bool)
        if len(sizes) and self.authors:
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            flags |= np.logical_or.reduceat(self.author_rows(author_ids), starts)
        return flags

    # -- raw records (quarantine lines, landing files: few, or read one by one anyway) ---------------

    @cached_property
    def _id_pattern(self) -> re.Pattern | None:
        ids = sorted(self.authors | self.conversations | {c.removeprefix("twcs-") for c in self.conversations
                                                           if c.startswith("twcs-")}, key=len, reverse=True)
        return re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, ids)) + r")(?![\w-])") if ids else None

    def names(self, raw) -> bool:
        """Whether a raw record as read (a JSON object, TWCS rows, or an unparseable line) names a subject."""
        if not self:
            return False
        if isinstance(raw, list):
            return any(self.names(item) for item in raw)
        if isinstance(raw, dict):
            if str(raw.get("conversation_id")) in self.conversations or str(raw.get("author_id")) in self.authors:
                return True
            if raw.get("tweet_id") is not None and f"twcs-{raw['tweet_id']}".removesuffix(".0") in self.conversations:
                return True
            messages = raw.get("messages")
            return isinstance(messages, list) and any(isinstance(m, dict) and self.names(m) for m in messages)
        return isinstance(raw, str) and self._id_pattern is not None and bool(self._id_pattern.search(raw))


# -- recording requests ------------------------------------------------------------------------------

def parse_subjects(authors: Iterable[str] = (), conversations: Iterable[str] = ()) -> list[dict]:
    """The subjects of a request, each once; an id given twice (or empty) is an error naming it."""
    subjects, seen = [], set()
    for kind, ids in (("author", authors), ("conversation", conversations)):
        for raw in ids:
            sid = str(raw).strip()
            if not sid:
                raise ErasureError(f"an empty {kind} id was given")
            if (kind, sid) in seen:
                raise ErasureError(f"{kind} id {sid!r} is given twice; give each id once")
            if kind == "author" and sid.startswith(SERVED_AUTHOR_PREFIX):
                raise ErasureError(f"author id {sid!r} is the model itself ({SERVED_AUTHOR_PREFIX}...), not a person")
            seen.add((kind, sid))
            subjects.append({"kind": kind, "id": sid})
    if not subjects:
        raise ErasureError("no id given: name at least one author or conversation")
    return subjects


def read_subject_file(text: str, source: str) -> list[dict]:
    """A batch file: one `author ID` or `conversation ID` per line (`#` comments and blank lines allowed).

    Every malformed line is reported at once, with its number; nothing is recorded from a bad file."""
    authors, conversations, errors = [], [], []
    for no, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ERASURE_KINDS:
            errors.append(f"{source}:{no}: expected '<author|conversation> <id>', got {line[:80]!r}")
            continue
        (authors if parts[0] == "author" else conversations).append(parts[1])
    if errors:
        raise ErasureError(f"{len(errors)} malformed line(s), nothing recorded:\n  " + "\n  ".join(errors))
    try:
        return parse_subjects(authors, conversations)
    except ErasureError as exc:
        raise ErasureError(f"{source}: {exc}; nothing recorded") from None


def new_record(subjects: list[dict], *, requested_by: str, reason: str | None, now: datetime | None = None) -> dict:
    if not requested_by or not requested_by.strip():
        raise ErasureError("requested_by is empty: say who asked for the erasure")
    now = now or datetime.now(UTC)
    return {"request_id": uuid.uuid4().hex[:16], "requested_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "requested_by": requested_by.strip(), "reason": reason, "subjects": subjects}


def append_record(lake: Lake, record: dict) -> str:
    """Store a request as a new object of the log (never overwriting one); returns its key."""
    key = f"{ERASURE_PREFIX}/{record['requested_at'].replace(':', '')}-{record['request_id']}.json"
    if not lake.write_new(key, json.dumps(record, indent=2, ensure_ascii=False).encode()):
        raise ErasureError(f"{lake.url(key)} exists already; the log is append-only")
    return key
