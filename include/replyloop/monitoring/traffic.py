"""The traffic of a window of days, read from the lake: served replies and their feedback (raw/replies,
raw/feedback), and, from the current curated snapshot, the conversations no agent answered and the
customer messages the model was trained on."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import pandas as pd

from replyloop.contract import RAW_PREFIXES
from replyloop.lake import Lake

log = logging.getLogger(__name__)
REPLY_COLUMNS = ["reply_id", "day", "model_version", "platform", "channel", "fallback", "fallback_reason",
                 "latency_ms", "customer_text"]


def window(end: date, days: int) -> list[str]:
    return [(end - timedelta(days=k)).isoformat() for k in range(days - 1, -1, -1)]


def _records(lake: Lake, prefix: str, days: list[str]):
    for day in days:
        for obj in lake.list(f"{prefix}/dt={day}/"):
            for n, line in enumerate(lake.read_bytes(obj.key).decode("utf-8", "replace").splitlines(), 1):
                try:
                    yield day, json.loads(line)
                except ValueError:  # a torn last line after a crash: counted by ingestion's quarantine
                    log.warning("skipping unreadable line %d of %s", n, obj.key)


def served_replies(lake: Lake, days: list[str]) -> pd.DataFrame:
    rows = []
    for day, r in _records(lake, RAW_PREFIXES["replies"], days):
        customer = [m["text"] for m in r.get("messages", []) if m.get("role") == "customer"]
        rows.append({"reply_id": r.get("reply_id"), "day": day, "model_version": str(r.get("model_version")),
                     "platform": r.get("platform"), "channel": r.get("channel"), "fallback": bool(r.get("fallback")),
                     "fallback_reason": r.get("fallback_reason"), "latency_ms": r.get("latency_ms"),
                     "customer_text": customer[-1] if customer else ""})
    return pd.DataFrame(rows, columns=REPLY_COLUMNS)


def feedback_events(lake: Lake, days: list[str]) -> pd.DataFrame:
    """Feedback events of the window and of the days after a reply (feedback may come late)."""
    rows = [{"reply_id": e.get("message_id"), "rating": e.get("rating"), "corrected": bool(e.get("correction"))}
            for _, e in _records(lake, RAW_PREFIXES["feedback"], days)]
    frame = pd.DataFrame(rows, columns=["reply_id", "rating", "corrected"])
    return frame.drop_duplicates("reply_id", keep="last")  # the latest rating of a reply counts


UNANSWERED_COLUMNS = ["conversation_id", "day", "platform", "channel", "customer_text"]


def curated_traffic(lake: Lake, days: list[str]) -> tuple[list[str], pd.DataFrame]:
    """From the current curated snapshot: the customer messages of the answered conversations of the training
    split (drift's reference: what the model learnt from), and the conversations no agent answered whose last
    customer message was written on one of `days` (one row each, with that message). Before the first
    snapshot: nothing. A conversation counts as answered once any export holds an agent turn of it."""
    from replyloop.ingest.snapshot import read_snapshot

    _, messages, _ = read_snapshot(lake)  # empty frames before the first snapshot; read errors propagate
    answered = set(messages.loc[messages["role"] == "agent", "conversation_id"])
    customer = messages[messages["role"] == "customer"]
    is_answered = customer["conversation_id"].isin(answered)
    training = customer.loc[is_answered & (customer["split"] == "train"), "text"].astype(str).tolist()
    last = (customer[~is_answered].sort_values(["conversation_id", "turn"])
            .drop_duplicates("conversation_id", keep="last"))
    last = last.assign(day=last["created_at"].astype(str).str[:10])
    waiting = last[last["day"].isin(days)].rename(columns={"text": "customer_text"})
    return training, waiting.reindex(columns=UNANSWERED_COLUMNS).reset_index(drop=True)
