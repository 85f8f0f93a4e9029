"""Unanswered conversations are curated (not quarantined); served replies (raw/replies) are curated, the
latest record of a conversation wins, and feedback on a reply id joins however many days later."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from replyloop.contract import SERVED_AUTHOR_PREFIX
from replyloop.ingest.pipeline import read_snapshot, run_ingest
from replyloop.ingest.snapshot import Snapshot, unanswered_ids
from .test_pipeline import assert_accounted, conv, jsonl

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


TOPICS = {"c-s": ("my blue kettle arrived cracked", "kettle replacement"),
          "c-t": ("the invoice shows the wrong postcode", "invoice correction"),
          "c-u": ("my gift card code says expired already", "gift card extension")}


def served(cid: str, day: str, turns: int, *, version: str = "3") -> dict:
    """A raw/replies record: the conversation so far, then the served reply."""
    complaint, remedy = TOPICS[cid]
    messages = []
    for k in range(turns):
        if k % 2 == 0:
            messages.append({"message_id": f"{cid}-m{k}", "role": "customer", "author_id": "u-77",
                             "text": f"Message {k}: {complaint}, what now?", "created_at": f"{day}T10:0{k}:00Z"})
        else:
            messages.append({"message_id": f"{cid}-r{k}", "role": "agent",
                             "author_id": f"{SERVED_AUTHOR_PREFIX}v{version}",
                             "text": f"Sorry! We will arrange a {remedy} (step {k}).",
                             "created_at": f"{day}T10:0{k}:30Z"})
    return {"conversation_id": cid, "platform": "twitter", "channel": "public_reply", "created_at": f"{day}T10:00:00Z",
            "messages": messages, "reply_id": messages[-1]["message_id"], "model_version": version, "fallback": False}


def feedback(event: str, cid: str, mid: str, day: str, correction: str | None = None) -> dict:
    return {"event_id": event, "conversation_id": cid, "message_id": mid, "rating": "down" if correction else "up",
            "correction": correction, "model_version": "3", "created_at": f"{day}T12:00:00Z"}


def test_unanswered_conversations_are_curated_flagged_and_not_trained(settings, lake,
                                                                      smollm2_tokenizer_dir):
    waiting = conv("c-open", customer="Hello? Three days and no answer about the broken zip")
    only_customer = {**waiting, "messages": waiting["messages"][:1]}
    lake.write_bytes("raw/conversations/dt=2026-11-22/a.jsonl",
                     jsonl(conv("c-1"), only_customer, {**conv("c-open2", customer="Any news on my refund to Leeds?"),
                                                        "messages": conv("c-open2")["messages"][:1]}))
    manifest = run_ingest(settings, lake=lake, now=NOW)
    assert_accounted(manifest)
    assert manifest["counts"]["quarantined"] == 0 and manifest["counts"]["curated"] == 3
    assert manifest["counts"]["unanswered"] == 2 and manifest["totals"]["unanswered_conversations"] == 2
    messages = Snapshot.current(lake).tables()[0]
    assert unanswered_ids(messages) == ["c-open", "c-open2"]

    from transformers import AutoTokenizer

    from replyloop.training.examples import build_examples, conversations, prompts_and_references

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    no_feedback = pd.DataFrame(columns=["conversation_id", "message_id", "created_at", "rating", "correction"])
    convs = [c for split in ("train", "eval") for c in conversations(messages.to_pandas(), no_feedback, split)[0]]
    assert {ex.conversation_id for ex in build_examples(tokenizer, "You are Acme's agent.", convs, 512)} == {"c-1"}
    assert [ref for _, ref in prompts_and_references(convs, 10)] == ["Sorry! DM us and we'll check."]


def test_served_replies_supersede_and_feedback_joins_days_later(settings, lake):
    lake.write_bytes("raw/replies/dt=2026-11-20/r.jsonl", jsonl(served("c-s", "2026-11-20", 2),
                                                               served("c-t", "2026-11-20", 2)))
    first = run_ingest(settings, lake=lake, now=NOW)
    assert first["counts"]["curated"] == 2
    # the same day again lands a longer record of c-t: it supersedes the shorter one in the same batch
    lake.write_bytes("raw/replies/dt=2026-11-21/r.jsonl", jsonl(served("c-s", "2026-11-21", 4),
                                                               served("c-u", "2026-11-21", 2),
                                                               served("c-u", "2026-11-21", 4)))
    second = run_ingest(settings, lake=lake, now=NOW)
    assert_accounted(second)
    assert second["counts"] == {**second["counts"], "raw": 3, "curated": 2, "duplicates": 1}
    assert second["counts"]["duplicates_by_kind"] == {"superseded": 1}
    assert second["erasure"]["superseded_replies"] == {"replies/dt=2026-11-20": 1}
    _, messages, _ = read_snapshot(lake)
    turns = messages.groupby("conversation_id")["turn"].count().to_dict()
    assert turns == {"c-s": 4, "c-t": 2, "c-u": 4}  # c-s once, with all four turns
    # an older, shorter record arriving later (backfill) does not bring the short version back
    again = run_ingest(settings, lake=lake, date="2026-11-20", now=NOW)
    assert again["counts"]["duplicates_by_kind"] == {"superseded": 1}
    assert read_snapshot(lake)[1].groupby("conversation_id")["turn"].count().to_dict() == turns
    # feedback on the first reply of c-s, eight days later, joins the conversation stored days ago
    lake.write_bytes("raw/feedback/dt=2026-11-29/f.jsonl",
                     jsonl(feedback("f-1", "c-s", "c-s-r1", "2026-11-29", correction="Sorry! Please DM us your order."),
                           feedback("f-2", "c-x", "c-x-r1", "2026-11-29")))
    late = run_ingest(settings, lake=lake, now=NOW)
    assert late["feedback_counts"]["curated"] == 1 and late["feedback_counts"]["quarantined.unknown_conversation"] == 1
    assert read_snapshot(lake)[2]["event_id"].tolist() == ["f-1"]
