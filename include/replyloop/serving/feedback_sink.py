"""Writes feedback events (and the exchanges they rate) into the landing zone for the next ingestion."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from datetime import UTC, datetime

from replyloop.contract import RAW_PREFIXES
from replyloop.lake import Lake


class ExchangeLog:
    """The last N served exchanges, so feedback can bring its conversation into the lake."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, conversation: dict, message_id: str) -> None:
        with self._lock:
            self._items[(conversation["conversation_id"], message_id)] = conversation
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, conversation_id: str, message_id: str) -> dict | None:
        return self._items.get((conversation_id, message_id))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_feedback(lake: Lake, event: dict, conversation: dict | None) -> str:
    """One small file per event (atomic writes, no lost appends); ingestion reads the day's partition."""
    day = event["created_at"][:10]
    event_id = event["event_id"]
    if conversation is not None:
        key = f"{RAW_PREFIXES['conversations']}/dt={day}/api-{event_id}.jsonl"
        lake.write_bytes(key, (json.dumps(conversation, ensure_ascii=False) + "\n").encode())
    key = f"{RAW_PREFIXES['feedback']}/dt={day}/api-{event_id}.jsonl"
    lake.write_bytes(key, (json.dumps(event, ensure_ascii=False) + "\n").encode())
    return key


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"
