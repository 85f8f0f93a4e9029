"""The reply API on a real (tiny) registered model: replies, feedback into the lake, alias following."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from replyloop import registry
from replyloop.ingest.pipeline import run_ingest
from replyloop.serving.main import create_app
from replyloop.serving.routes.reply import FALLBACK_REPLY
from replyloop.serving.model_store import ModelStore


@pytest.fixture(scope="module")
def client(tiny_loop):
    settings = tiny_loop["settings"]
    if registry.alias_version(settings, "champion") is None:
        registry.promote(settings, tiny_loop["trained"]["version"], reason="test", by="manual")
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_and_ready(client, tiny_loop):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"] == registry.alias_version(tiny_loop["settings"], "champion")


def test_reply_and_feedback_flow_into_the_lake(client, tiny_loop):
    settings, lake = tiny_loop["settings"], tiny_loop["lake"]
    r = client.post("/v1/reply", json={"text": "Where is my order #A12345? Mail me at jo@example.com"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] and body["message_id"] and body["reply"].strip()
    assert body["fallback"] is (body["reply"] == FALLBACK_REPLY)
    fb = client.post("/v1/feedback", json={"conversation_id": body["conversation_id"], "message_id": body["message_id"],
                                           "rating": "down", "correction": "Sorry! Please DM us your order number."})
    assert fb.status_code == 202, fb.text
    assert fb.json()["conversation_known"] is True
    stored = lake.read_bytes(fb.json()["stored_at"].split(lake.uri + "/", 1)[1])
    event = json.loads(stored)
    assert event["rating"] == "down" and event["model_version"] == body["model_version"]
    # the next ingestion takes both the exchange and its feedback; PII is redacted on the way in
    today = event["created_at"][:10]
    assert run_ingest(settings, lake=lake)["status"] == "no_new_data", "today's partition is still open"
    manifest = run_ingest(settings, lake=lake, date=today)
    assert manifest["feedback_counts"]["curated"] == 1
    from replyloop.ingest.pipeline import read_snapshot

    _, messages, feedback = read_snapshot(lake)
    exchange = messages[messages["conversation_id"] == body["conversation_id"]]
    assert list(exchange["role"]) == ["customer", "agent"]
    assert "jo@example.com" not in exchange["text"].iloc[0] and "[EMAIL]" in exchange["text"].iloc[0]
    assert body["conversation_id"] in set(feedback["conversation_id"])


@pytest.mark.parametrize("payload,fragment", [
    ({}, "give exactly one of 'text' or 'messages'"),
    ({"text": "hi", "messages": [{"role": "customer", "text": "hi"}]}, "exactly one"),
    ({"messages": [{"role": "customer", "text": "hi"}, {"role": "agent", "text": "yo"}]}, "last message"),
    ({"messages": [{"role": "bot", "text": "hi"}]}, "customer"),
    ({"text": "x" * 5000}, "at most 4000"),
])
def test_bad_requests_say_what_is_wrong(client, payload, fragment):
    r = client.post("/v1/reply", json=payload)
    assert r.status_code == 422
    assert fragment in r.text


def test_bad_feedback_is_refused(client):
    r = client.post("/v1/feedback", json={"conversation_id": "c", "message_id": "m", "rating": "meh"})
    assert r.status_code == 422 and "rating" in r.text


def test_model_store_follows_the_alias(tiny_loop):
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    settings = tiny_loop["settings"]
    store = ModelStore(settings)
    first = store.load().version
    other = train(load_train_config(max_steps=1, batch_size=2, max_eval_examples=2), settings)["version"]
    registry.promote(settings, other, reason="alias move", by="manual")
    try:
        assert store.refresh() is True and store.current.version == other
        assert store.refresh() is False
    finally:
        registry.promote(settings, first, reason="restore", by="manual")


def test_no_champion_means_not_ready(settings):
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/reply", json={"text": "hello"})
        assert r.status_code == 503 and "no champion" in r.json()["detail"]
