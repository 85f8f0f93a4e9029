"""The output check of every served reply (issue 11, point 4): a reply that leaks PII, insults the customer
or is empty never leaves the server; the safe fallback goes out instead, is stored as what was served, and
each fallback is counted by reason in /metrics.

The model is replaced by a scripted engine (through `create_app(loader=...)`, the app's own seam for that):
what a model writes is this check's input, and a trained model that leaks on cue would cost minutes. The
check itself (the PII detector and the fitted reply-safety judge) is the real one.
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from replyloop.serving.engine import Generation
from replyloop.serving.main import create_app

from .conftest import wait_ready

SCRIPT = {  # what the "model" writes -> the reason the server must give for replacing it (None: sent as is)
    "Sure! The card we have on file for you is 4111 1111 1111 1111, call us on +44 7911 123456.": "pii",
    "That is not our problem. Figure it out yourself and stop wasting our time.": "unsafe",
    "   ": "empty",
    "Thanks for reaching out! We're sorry about the delay; please DM us your order number and we'll check.": None,
}


class ScriptedEngine:
    name, device = "scripted", "cpu"

    def __init__(self, replies: list[str]):
        self.replies = iter(replies)

    def generate(self, conversations: list[list[dict]]) -> list[Generation]:
        return [Generation(next(self.replies), 12) for _ in conversations]


def test_leaking_rude_or_empty_replies_never_leave_and_each_fallback_is_counted(serve_settings, api_key,
                                                                                 served_registry):
    app = create_app(serve_settings, loader=lambda settings, version: ScriptedEngine(list(SCRIPT)))
    with TestClient(app) as client:
        client.headers["X-API-Key"] = api_key
        wait_ready(client)
        served = []
        for k in range(len(SCRIPT)):  # one at a time: the script is answered in order
            r = client.post("/v1/replies", json={"text": f"Where is my order? (asked {k})", "conversation_id": f"c-g{k}"})
            assert r.status_code == 200, r.text
            served.append(r.json())
        metrics = client.get("/metrics").text

    fallback = serve_settings.fallback_reply
    expected = [fallback if reason else text for text, reason in SCRIPT.items()]
    assert [s["reply"] for s in served] == expected
    for reason in ("pii", "unsafe", "empty"):
        assert f'replyloop_fallbacks_total{{reason="{reason}"}} 1.0' in metrics, reason
    lake = served_registry["lake"]
    stored = {rec["reply_id"]: rec for o in lake.list("raw/replies")
              for rec in map(json.loads, lake.read_bytes(o.key).decode().splitlines())}
    records = [stored[s["reply_id"]] for s in served]
    assert [r["messages"][-1]["text"] for r in records] == expected, "the lake holds what was sent, never the leak"
    assert [r["fallback_reason"] for r in records] == list(SCRIPT.values())
    assert [r["fallback"] for r in records] == [reason is not None for reason in SCRIPT.values()]
