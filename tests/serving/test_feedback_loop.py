"""End to end: reply -> feedback with a correction -> ingestion -> the next training examples carry it."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from replyloop.ingest.pipeline import read_snapshot, run_ingest
from replyloop.lake import open_lake
from replyloop.serving.main import create_app
from replyloop.training.examples import conversations

from .conftest import wait_ready

CORRECTION = "So sorry for the wait! Please DM us your order number and we will chase the courier today."


def test_a_correction_reaches_the_next_training_examples(serve_settings, api_key, tmp_path):
    settings = serve_settings.model_copy(update={"lake_uri": str(tmp_path / "lake")})
    with TestClient(create_app(settings)) as c:
        c.headers["X-API-Key"] = api_key
        wait_ready(c)
        asks = [{"role": "customer", "text": "@AcmeSupport my parcel is a week late"}]
        body = c.post("/v1/replies", json={"conversation_id": "c-loop-1", "platform": "twitter",
                                           "messages": asks}).json()
        assert c.post("/v1/feedback", json={"reply_id": body["reply_id"], "rating": "down",
                                            "correction": CORRECTION}).status_code == 202
    day = datetime.now(UTC).date().isoformat()
    lake = open_lake(settings.lake)
    run_ingest(settings, lake=lake, date=day)
    _, messages, feedback = read_snapshot(lake)
    convs = []
    for split in ("train", "eval"):
        convs += conversations(messages, feedback, split)[0]
    conv = next(cv for cv in convs if cv["conversation_id"] == "c-loop-1")
    assert conv["turns"][-1] == {"role": "agent", "text": CORRECTION, "train": True}
