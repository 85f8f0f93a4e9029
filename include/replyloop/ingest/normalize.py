"""Normalisation of raw records to the canonical contract.

Text: HTML entities unescaped, Unicode NFC, control characters dropped, whitespace collapsed.
Roles: mapped to `customer` / `agent`. Timestamps: parsed and written as UTC ISO-8601 with `Z`.
A record that cannot be normalised raises `RecordError` with a reason code of `contract.REASONS`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from replyloop.contract import CHANNELS, RATINGS

ROLE_ALIASES = {
    "customer": "customer", "user": "customer", "client": "customer", "inbound": "customer",
    "agent": "agent", "brand": "agent", "support": "agent", "assistant": "agent", "outbound": "agent",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"\s+")


class RecordError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def clean_text(text: str) -> str:
    text = html.unescape(html.unescape(text)) if "&" in text else text  # exports are sometimes double-escaped
    if not text.isascii():  # ASCII is NFC already
        text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text).strip()


@lru_cache(maxsize=8)
def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: Any, *, field: str, now: datetime) -> str:
    """ISO-8601 (any offset) or the TWCS form `Tue Oct 31 22:10:47 +0000 2017` -> `...Z` in UTC."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError("missing_field", f"{field} is missing")
    raw = value.strip()
    if len(raw) == 20 and raw[4] == raw[7] == "-" and raw[10] == "T" and raw[19] == "Z":  # canonical: keep it
        try:
            datetime.fromisoformat(raw)
        except ValueError:
            raise RecordError("bad_timestamp", f"{field}={raw!r} is not a timestamp") from None
        if raw > _utc_stamp(now):
            raise RecordError("future_timestamp", f"{field}={raw!r} lies in the future")
        return raw
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            ts = datetime.strptime(raw, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            try:
                ts = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                raise RecordError("bad_timestamp", f"{field}={raw!r} is not a timestamp") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)  # the contract says UTC; naive values are taken as UTC
    ts = ts.astimezone(UTC)
    if ts > now:
        raise RecordError("future_timestamp", f"{field}={raw!r} lies in the future")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _require_str(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError("missing_field", f"{where}{key} is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError("bad_type", f"{where}{key} must be a string, got {type(value).__name__}")
    return str(value).strip()


def normalize_conversation(data: dict[str, Any], *, now: datetime, max_chars: int) -> dict[str, Any]:
    """A canonical conversation dict with clean texts, mapped roles and UTC timestamps."""
    conv_id = _require_str(data, "conversation_id", "")
    channel = str(data.get("channel") or "public_reply").strip().lower()
    if channel not in CHANNELS:
        raise RecordError("unknown_channel", f"channel={data.get('channel')!r} is not one of {', '.join(CHANNELS)}")
    language = data.get("language")
    if language is not None and not isinstance(language, str):
        raise RecordError("bad_type", f"language must be a string, got {type(language).__name__}")
    messages = data.get("messages")
    if messages is None:
        raise RecordError("missing_field", "messages is missing")
    if not isinstance(messages, list):
        raise RecordError("bad_type", f"messages must be a list, got {type(messages).__name__}")
    out_messages = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]."
        if not isinstance(msg, dict):
            raise RecordError("bad_type", f"messages[{i}] must be an object, got {type(msg).__name__}")
        role_raw = msg.get("role")
        role = ROLE_ALIASES.get(str(role_raw).strip().lower()) if isinstance(role_raw, str) else None
        if role is None:
            raise RecordError("unknown_role", f"{where}role={role_raw!r} is neither customer nor agent")
        text_raw = msg.get("text")
        if text_raw is None:
            raise RecordError("missing_field", f"{where}text is missing")
        if not isinstance(text_raw, str):
            raise RecordError("bad_type", f"{where}text must be a string, got {type(text_raw).__name__}")
        if len(text_raw) > max_chars:
            raise RecordError("too_long", f"{where}text has {len(text_raw)} characters (max {max_chars})")
        text = clean_text(text_raw)
        if not text:
            raise RecordError("empty_text", f"{where}text is empty after normalisation")
        out_messages.append({
            "message_id": _require_str(msg, "message_id", where),
            "role": role,
            "author_id": str(msg.get("author_id") or role),
            "text": text,
            "created_at": parse_timestamp(msg.get("created_at") or data.get("created_at"),
                                          field=f"{where}created_at", now=now),
        })
    if not out_messages:
        raise RecordError("missing_field", "messages is empty")
    return {
        "conversation_id": conv_id,
        "platform": str(data.get("platform") or "unknown").strip().lower(),
        "channel": channel,
        "language": (language or "").strip().lower() or None,
        "created_at": parse_timestamp(data.get("created_at") or out_messages[0]["created_at"],
                                      field="created_at", now=now),
        "messages": out_messages,
    }


def check_conversation(conv: dict[str, Any]) -> None:
    """Conversation-level rules: the customer opens, time runs forward, ids unique. A conversation no agent
    answered (yet) is kept: it is traffic, counted as `unanswered` in the manifest, with nothing to train on."""
    msgs = conv["messages"]
    roles = [m["role"] for m in msgs]
    if "customer" not in roles:
        raise RecordError("no_customer_turn", "the conversation has no customer message")
    if roles[0] != "customer":
        raise RecordError("bad_turn_order", f"the conversation opens with a {roles[0]} message")
    stamps = [m["created_at"] for m in msgs]
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        raise RecordError("bad_turn_order", "message timestamps go backwards")
    ids = [m["message_id"] for m in msgs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise RecordError("duplicate_message_id", f"message id {dup!r} appears more than once")


def normalize_feedback(data: dict[str, Any], *, now: datetime, max_chars: int) -> dict[str, Any]:
    rating = data.get("rating")
    if not isinstance(rating, str) or rating.strip().lower() not in RATINGS:
        raise RecordError("bad_rating", f"rating={rating!r} is neither up nor down")
    correction = data.get("correction")
    if correction is not None:
        if not isinstance(correction, str):
            raise RecordError("bad_type", f"correction must be a string or null, got {type(correction).__name__}")
        if len(correction) > max_chars:
            raise RecordError("too_long", f"correction has {len(correction)} characters (max {max_chars})")
        correction = clean_text(correction) or None
    version = data.get("model_version")
    return {
        "event_id": _require_str(data, "event_id", ""),
        "conversation_id": _require_str(data, "conversation_id", ""),
        "message_id": _require_str(data, "message_id", ""),
        "rating": rating.strip().lower(),
        "correction": correction,
        "model_version": None if version is None else str(version),
        "created_at": parse_timestamp(data.get("created_at"), field="created_at", now=now),
    }
