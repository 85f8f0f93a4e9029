"""The reply API on the tiny loop's champion: replies and feedback stored durably, bad input refused."""

from __future__ import annotations

import hashlib
import json
import logging
import time

import pytest
from fastapi.testclient import TestClient

from replyloop.contract import SERVED_AUTHOR_PREFIX
from replyloop.serving.main import create_app
from replyloop.serving.security import keys_file, sign

from .conftest import WEBHOOK_SECRET, wait_ready

CONVERSATION = {"conversation_id": "c-api-1", "platform": "twitter", "channel": "public_reply",
                "messages": [{"role": "customer", "text": "@AcmeSupport my parcel is late", "author_id": "u-1"},
                             {"role": "agent", "text": "Sorry! What is the order number?"},
                             {"role": "customer", "text": "It is A12345, mail me at jo@example.com"}]}


def _lines(lake, prefix: str) -> list[dict]:
    return [json.loads(line) for o in lake.list(prefix) for line in lake.read_bytes(o.key).decode().splitlines()]


def test_reply_is_stored_with_its_version_and_feedback_refers_to_it(client, served_registry):
    lake = served_registry["lake"]
    r = client.post("/v1/replies", json=CONVERSATION)
    assert r.status_code == 200, r.text
    body = r.json()
    stored = [rec for rec in _lines(lake, "raw/replies") if rec["reply_id"] == body["reply_id"]]
    assert len(stored) == 1
    rec = stored[0]
    assert rec["model_version"] == body["model_version"] and rec["conversation_id"] == "c-api-1"
    assert [m["role"] for m in rec["messages"]] == ["customer", "agent", "customer", "agent"]
    assert rec["messages"][-1] == {**rec["messages"][-1], "message_id": body["reply_id"], "text": body["reply"],
                                   "author_id": f"{SERVED_AUTHOR_PREFIX}v{body['model_version']}"}
    fb = client.post("/v1/feedback", json={"reply_id": body["reply_id"], "rating": "down",
                                           "correction": "Sorry! Please DM us the order number."})
    assert fb.status_code == 202, fb.text
    events = [e for e in _lines(lake, "raw/feedback") if e["message_id"] == body["reply_id"]]
    assert len(events) == 1
    assert events[0] | {"event_id": "", "created_at": ""} == {
        "event_id": "", "created_at": "", "conversation_id": "c-api-1", "message_id": body["reply_id"],
        "rating": "down", "correction": "Sorry! Please DM us the order number.", "model_version": body["model_version"]}


def test_feedback_finds_a_reply_after_a_restart(serve_settings, api_key, client):
    reply_id = client.post("/v1/replies", json={"text": "where is my order?"}).json()["reply_id"]
    with TestClient(create_app(serve_settings)) as again:
        again.headers["X-API-Key"] = api_key
        assert again.post("/v1/feedback", json={"reply_id": reply_id, "rating": "up"}).status_code == 202
        r = again.post("/v1/feedback", json={"reply_id": "r-never-served", "rating": "up"})
        assert r.status_code == 404 and "unknown reply id 'r-never-served'" in r.json()["detail"]


def test_the_old_path_is_an_alias(client):
    r = client.post("/v1/reply", json={"text": "hello there"})
    assert r.status_code == 200 and r.json()["reply_id"].startswith("r-")


def test_keys_are_required_and_stored_hashed(client, serve_settings, api_key):
    assert client.post("/v1/replies", json={"text": "hi"}, headers={"X-API-Key": ""}).status_code == 401
    assert client.post("/v1/replies", json={"text": "hi"}, headers={"X-API-Key": api_key + "x"}).status_code == 401
    bearer = client.post("/v1/replies", json={"text": "hi"}, headers={"X-API-Key": "", "Authorization": f"Bearer {api_key}"})
    assert bearer.status_code == 200
    stored = keys_file(serve_settings).read_text()
    assert api_key not in stored and hashlib.sha256(api_key.encode()).hexdigest() in stored


def test_rate_limit_per_key(serve_settings, api_key):
    tight = serve_settings.model_copy(update={"serve_rate_burst": 2, "serve_rate_per_minute": 1.0})
    with TestClient(create_app(tight)) as c:
        c.headers["X-API-Key"] = api_key
        codes = [c.post("/v1/feedback", json={"reply_id": "r-x", "rating": "up"}).status_code for _ in range(3)]
        assert codes == [404, 404, 429]
        r = c.post("/v1/feedback", json={"reply_id": "r-x", "rating": "up"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_oversized_bodies_get_413_before_being_read_whole(client, serve_settings):
    limit = serve_settings.serve_max_body_bytes
    big = json.dumps({"text": "x" * (limit + 10)})
    assert client.post("/v1/replies", content=big, headers={"content-type": "application/json"}).status_code == 413
    sent = []

    def chunks():  # no Content-Length: the guard counts the streamed bytes and stops early
        for _ in range(100):
            sent.append(1)
            yield b"x" * (limit // 4)

    r = client.post("/v1/replies", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]


@pytest.mark.parametrize("content,fragment", [
    (b'{"text": "caf\xe9 au lait"}', "not valid UTF-8 (byte 13)"),
    (b'{"text": "unterminated', "JSON decode error"),
    (b'[1, 2]', "body"),
])
def test_malformed_bodies_get_422(client, content, fragment):
    r = client.post("/v1/replies", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422 and fragment in r.json()["detail"]


@pytest.mark.parametrize("payload,fragment", [
    ({"messages": []}, "'messages' is empty"),
    ({"text": "   \n "}, "messages[0].text is empty or only whitespace"),
    ({}, "give exactly one of 'text'"),
    ({"messages": [{"role": "customer", "text": "hi"}, {"role": "agent", "text": "yo"}]}, "is the agent's"),
    ({"messages": [{"role": "customer", "text": "hi"}] * 51}, "at most 50 are accepted"),
    ({"text": "x" * 4001}, "at most 4000 are accepted"),
    ({"messages": [{"role": "bot", "text": "hi"}]}, "body.messages.0.role"),
    ({"text": "hi", "channel": "carrier_pigeon"}, "body.channel"),
])
def test_bad_conversations_are_refused_and_nothing_is_written(client, served_registry, payload, fragment):
    before = len(_lines(served_registry["lake"], "raw/replies"))
    r = client.post("/v1/replies", json=payload)
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text
    assert len(_lines(served_registry["lake"], "raw/replies")) == before


@pytest.mark.parametrize("payload,status,fragment", [
    ({"reply_id": "r-1", "rating": "meh"}, 422, "body.rating"),
    ({"reply_id": "r-1", "rating": "up", "correction": "  "}, 422, "correction is empty"),
    ({"reply_id": "r-unknown", "rating": "down"}, 404, "unknown reply id"),
])
def test_bad_feedback_is_refused_and_nothing_is_written(client, served_registry, payload, status, fragment):
    before = len(_lines(served_registry["lake"], "raw/feedback"))
    r = client.post("/v1/feedback", json=payload)
    assert r.status_code == status and fragment in r.json()["detail"]
    assert len(_lines(served_registry["lake"], "raw/feedback")) == before


def _signed(body: bytes, ts: int | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    ts = int(time.time()) if ts is None else ts
    return {"X-Replyloop-Timestamp": str(ts), "X-Replyloop-Signature": sign(secret.encode(), ts, body),
            "content-type": "application/json", "X-API-Key": ""}


def test_webhooks_verify_signature_time_and_replay(client):
    body = json.dumps({"type": "message.created", "conversation": {"text": "my order is late"}}).encode()
    headers = _signed(body)
    ok = client.post("/v1/webhooks/twitter", content=body, headers=headers)
    assert ok.status_code == 200 and ok.json()["reply_id"]
    replay = client.post("/v1/webhooks/twitter", content=body, headers=headers)
    assert replay.status_code == 409 and "replay" in replay.json()["detail"]
    bad = client.post("/v1/webhooks/twitter", content=body, headers=_signed(body, secret="not-the-secret-0000"))
    assert bad.status_code == 401 and "bad signature" in bad.json()["detail"]
    stale = client.post("/v1/webhooks/twitter", content=body, headers=_signed(body, ts=int(time.time()) - 3600))
    assert stale.status_code == 401 and "stale" in stale.json()["detail"]
    unsigned = client.post("/v1/webhooks/twitter", content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401 and "missing" in unsigned.json()["detail"]
    assert client.post("/v1/webhooks/myspace", content=body, headers=_signed(body)).status_code == 404
    rating = json.dumps({"type": "reply.rated", "feedback": {"reply_id": ok.json()["reply_id"], "rating": "up"}}).encode()
    assert client.post("/v1/webhooks/twitter", content=rating, headers=_signed(rating)).status_code == 202


def test_a_refused_webhook_event_is_not_remembered_as_received(client, served_registry):
    """A delivery whose event is refused (here: rating an unknown reply) was not received: the platform's
    retry of it is answered like the first try, not as a replay, and nothing is written."""
    before = len(_lines(served_registry["lake"], "raw/feedback"))
    rating = json.dumps({"type": "reply.rated", "feedback": {"reply_id": "r-not-served", "rating": "up"}}).encode()
    headers = _signed(rating)
    first = client.post("/v1/webhooks/twitter", content=rating, headers=headers)
    retry = client.post("/v1/webhooks/twitter", content=rating, headers=headers)
    assert (first.status_code, retry.status_code) == (404, 404), retry.text
    assert len(_lines(served_registry["lake"], "raw/feedback")) == before


def test_metrics_count_routes_statuses_versions_and_fallbacks(client):
    client.post("/v1/replies", json={"text": "hello"})
    client.post("/v1/replies", json={"messages": []})
    text = client.get("/metrics").text
    assert 'replyloop_requests_total{route="/v1/replies",status="200"}' in text
    assert 'replyloop_requests_total{route="/v1/replies",status="422"}' in text
    assert "replyloop_request_seconds_bucket" in text and "replyloop_queue_depth" in text
    assert "replyloop_generated_tokens_total" in text and "replyloop_fallbacks" in text
    ready = client.get("/readyz").json()
    assert ready["engine"] == "llamacpp"  # the default engine for a Llama on CPU (REPLYLOOP_SERVE_ENGINE=auto)
    assert f'replyloop_served_model{{engine="llamacpp",version="{ready["model_version"]}"}} 1.0' in text


def test_no_paths_keys_or_customer_text_leak(client, serve_settings, api_key, caplog):
    secret_text = "my-unique-customer-sentence-7781"
    with caplog.at_level(logging.DEBUG):
        bodies = [client.post("/v1/replies", json={"text": secret_text}).text,
                  client.post("/v1/replies", json={"text": secret_text}, headers={"X-API-Key": "nope"}).text,
                  client.post("/v1/feedback", json={"reply_id": "r-zz", "rating": "up", "correction": secret_text}).text,
                  client.get("/readyz").text, client.get("/openapi.json").text]
    home = str(serve_settings.home)
    assert not any(home in b for b in bodies)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret_text not in logged and api_key not in logged


def test_no_champion_the_server_starts_and_says_why(settings, api_key):
    from replyloop.serving.security import hash_key

    s = settings.model_copy(update={"api_key_hashes": f"t:{hash_key(api_key)}"})
    with TestClient(create_app(s)) as c:
        c.headers["X-API-Key"] = api_key
        deadline = time.monotonic() + 30
        while "no @champion" not in (c.get("/readyz").json().get("reason") or "") and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "has no @champion version yet" in ready.json()["reason"]
        r = c.post("/v1/replies", json={"text": "hello"})
        assert r.status_code == 503 and "no @champion" in r.json()["detail"]
    assert not (settings.home / "lake" / "raw" / "replies").exists()


def test_a_failing_registry_is_not_ready_and_says_so_not_no_champion(settings, api_key, failing_registry_uri):
    from replyloop.serving.security import hash_key

    s = settings.model_copy(update={"api_key_hashes": f"t:{hash_key(api_key)}", "mlflow_tracking_uri": failing_registry_uri,
                                    "mlflow_http_max_retries": 0, "mlflow_http_timeout": 5})
    with TestClient(create_app(s)) as c:
        c.headers["X-API-Key"] = api_key
        deadline = time.monotonic() + 30
        while "registry did not answer" not in (c.get("/readyz").json().get("reason") or "") \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "the model registry did not answer" in ready.json()["reason"]
        assert c.post("/v1/replies", json={"text": "hello"}).status_code == 503


class FailingEngine:
    name, device = "failing", "cpu"

    def generate(self, conversations):
        raise RuntimeError("cannot read /srv/secret/models/v1/model.bin")


def test_an_internal_error_answers_500_with_an_id_and_nothing_else(serve_settings, api_key, served_registry, caplog):
    before = len(_lines(served_registry["lake"], "raw/replies"))
    app = create_app(serve_settings, loader=lambda settings, version: FailingEngine())
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.DEBUG):
        c.headers["X-API-Key"] = api_key
        wait_ready(c)
        r = c.post("/v1/replies", json={"text": "customer-text-5521 where is my order"})
    assert r.status_code == 500 and r.json()["detail"].startswith("internal error (id ")
    assert "/srv/secret" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
    error_id = r.json()["detail"].removeprefix("internal error (id ").rstrip(")")
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert error_id in logged and "customer-text-5521" not in logged
    assert len(_lines(served_registry["lake"], "raw/replies")) == before


def test_a_reply_that_cannot_be_stored_is_not_served(serve_settings, api_key, tmp_path):
    """The reply log refuses the record (here raw/replies is a file, not a folder): 503, and nothing was
    served, so nothing is indexed either (feedback on it would find no reply)."""
    lake = tmp_path / "lake"
    (lake / "raw").mkdir(parents=True)
    (lake / "raw" / "replies").write_text("not a folder")
    settings = serve_settings.model_copy(update={"lake_uri": str(lake), "reply_index": tmp_path / "index.sqlite"})
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.headers["X-API-Key"] = api_key
        wait_ready(c)
        r = c.post("/v1/replies", json={"text": "where is my order?"})
        assert r.status_code == 503 and "could not be stored; nothing was served" in r.json()["detail"]
        assert "reply_id" not in r.json() and str(tmp_path) not in r.text
        assert c.app.state.replylog.index._db.execute("SELECT count(*) FROM replies").fetchone() == (0,)
