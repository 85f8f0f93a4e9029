"""monitor_feedback's report on served replies and feedback written as the API writes them."""

from __future__ import annotations

import json
from datetime import date

from replyloop.evaluation.embeddings import encode
from replyloop.monitoring.drift import drift
from replyloop.monitoring.report import build, run_monitor

DAY = date(2026, 11, 25)
ASKS = ["my parcel has not arrived yet", "I want my money back for the broken kettle", "cannot log in to my account",
        "the delivery is three days late", "thank you, the support was great"]


def _write(lake, version: str, n: int, down: int, start: int) -> None:
    replies, events = [], []
    for i in range(start, start + n):
        rid = f"r-{i}"
        replies.append({"conversation_id": f"c-{i}", "platform": "twitter", "channel": "public_reply" if i % 2 else
                        "direct_message", "created_at": f"{DAY}T10:00:00Z", "reply_id": rid, "model_version": version,
                        "fallback": i % 10 == 0, "fallback_reason": "pii" if i % 10 == 0 else None, "latency_ms": 100 + i,
                        "messages": [{"message_id": f"{rid}-in0", "role": "customer", "author_id": "u",
                                      "text": ASKS[i % len(ASKS)], "created_at": f"{DAY}T10:00:00Z"},
                                     {"message_id": rid, "role": "agent", "author_id": f"replyloop:v{version}",
                                      "text": "Sorry! Please DM us.", "created_at": f"{DAY}T10:00:01Z"}]})
        events.append({"event_id": f"f-{i}", "conversation_id": f"c-{i}", "message_id": rid,
                       "rating": "down" if i - start < down else "up", "correction": None, "model_version": version,
                       "created_at": f"{DAY}T11:00:00Z"})
    for prefix, rows in (("raw/replies", replies), ("raw/feedback", events)):
        lake.write_bytes(f"{prefix}/dt={DAY}/serve-v{version}.jsonl",
                         "".join(json.dumps(r) + "\n" for r in rows).encode())


def test_down_votes_by_version_ask_for_retraining(settings, lake):
    _write(lake, "1", 10, 0, 0)
    _write(lake, "2", 30, 20, 100)
    summary, reasons, replies, days = build(settings, lake, DAY, 3)
    assert summary["replies"] == 40 and summary["ratings"] == 40 and days[-1] == str(DAY)
    assert summary["down_by_version"] == {"1": {"down_rate": 0.0, "ratings": 10},
                                          "2": {"down_rate": 20 / 30, "ratings": 30}}
    assert summary["fallbacks_by_reason"] == {"pii": 4}
    assert set(summary["down_by_intent"]) <= {"order_status", "refund", "account_access", "delivery_delay",
                                              "complaint", "praise", "product_question"}
    assert len(reasons) == 1 and "down-vote rate 50.0% over 40 ratings" in reasons[0]


def test_quiet_traffic_asks_for_nothing_and_logs_a_report(settings, lake):
    import mlflow

    _write(lake, "1", 30, 3, 0)
    result = run_monitor(settings, end=DAY, days=1)
    assert result["retrain"] is False and result["summary"]["replies"] == 30
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(result["run_id"], "monitoring")}
    assert {"monitoring/report.html", "monitoring/down_by_version.png", "monitoring/summary.json"} <= files


def test_drift_is_larger_for_another_topic():
    support = encode(ASKS)
    more_support = encode(["where is my order", "refund please, the item broke", "password reset does not work"])
    recipes = encode(["whisk two eggs with sugar", "bake the bread for forty minutes", "add basil to the sauce"])
    assert drift(more_support, support)["drift"] < drift(recipes, support)["drift"]


def _conversation(cid: str, day: str, customer: str, agent: str | None, channel: str = "public_reply") -> dict:
    """A landed conversation (raw/conversations): the customer's message and, unless None, the agent's reply."""
    messages = [{"message_id": f"{cid}-1", "role": "customer", "author_id": "u1", "text": customer,
                 "created_at": f"{day}T10:00:00Z"}]
    if agent is not None:
        messages.append({"message_id": f"{cid}-2", "role": "agent", "author_id": "AcmeSupport", "text": agent,
                         "created_at": f"{day}T10:05:00Z"})
    return {"conversation_id": cid, "platform": "twitter", "channel": channel, "created_at": f"{day}T10:00:00Z",
            "language": "en", "messages": messages}


SUPPORT = ["the tracking page shows no update since Monday", "can I change the size of the jacket I ordered",
           "you charged my card twice for one order", "the discount code did not apply at checkout",
           "my loyalty points disappeared after the update", "how do I return a gift without a receipt",
           "the app crashes when I open my basket"]


def test_unanswered_conversations_are_counted_and_are_incoming_traffic_not_training_data(settings, lake):
    """A social export's unanswered conversations (curated with a flag by ingestion) reach the report: counted
    by channel, part of the incoming messages drift is measured on, and never part of its training reference."""
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.monitoring.traffic import curated_traffic

    day = "2026-11-24"
    recipes = ["how long do I bake sourdough bread", "what herbs go with roast lamb", "is basil good in pesto"]
    answered = [_conversation(f"c-{k}", day, text, "Sorry about that! Please DM us.")
                for k, text in enumerate(ASKS + SUPPORT)]
    waiting = [_conversation(f"c-open{k}", day, text, None, channel="direct_message") for k, text in enumerate(recipes)]
    lake.write_bytes(f"raw/conversations/dt={day}/export.jsonl",
                     "".join(json.dumps(c) + "\n" for c in answered + waiting).encode())
    run_ingest(settings, lake=lake)
    training, unanswered = curated_traffic(lake, [day])
    assert sorted(unanswered["conversation_id"]) == ["c-open0", "c-open1", "c-open2"]
    assert sorted(unanswered["customer_text"]) == sorted(recipes)
    assert not set(recipes) & set(training), "unanswered messages are not what the model learnt from"
    assert curated_traffic(lake, ["2026-11-23"])[1].empty, "only the window's days"

    summary, _, _, _ = build(settings, lake, date.fromisoformat(day), 1)
    assert summary["replies"] == 0 and summary["unanswered"] == 3
    assert summary["unanswered_by_channel"] == {"direct_message": 3}
    assert summary["drift"] > 0, "no reply was served: the unanswered messages alone are the incoming traffic"

    # The next day's export: the agent's answer to one of them, and a question of that day exported late.
    answer = {**_conversation("c-open1", day, recipes[1], "Sorry, we only sell kitchenware!"),
              "channel": "direct_message"}
    late = _conversation("c-late", day, "do you ship to Iceland", None)
    lake.write_bytes("raw/conversations/dt=2026-11-25/export.jsonl",
                     "".join(json.dumps(c) + "\n" for c in (answer, late)).encode())
    run_ingest(settings, lake=lake)
    _, unanswered = curated_traffic(lake, [day])
    assert sorted(unanswered["conversation_id"]) == ["c-late", "c-open0", "c-open2"], "counted by the day asked"
    assert curated_traffic(lake, ["2026-11-25"])[1].empty
