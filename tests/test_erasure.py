"""Erasure requests: bad input, the log, ingestion keeping subjects out, the lake lock."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from replyloop.contract import ERASURE_PREFIX, LAKE_LOCK_KEY
from replyloop.ingest.pipeline import IngestError, read_snapshot, run_ingest
from replyloop.ingest.replay import replay_quarantine
from replyloop.ingest.snapshot import Snapshot
from replyloop.privacy.erasure import ErasureError, read_subject_file
from replyloop.privacy.lock import LakeBusy, lake_lock
from replyloop.privacy.request import erase_subjects, request_erasure

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = "2026-11-22"


def conv(cid: str, author: str, text: str) -> dict:
    return {"conversation_id": cid, "platform": "twitter", "channel": "public_reply", "created_at": f"{DAY}T10:00:00Z",
            "messages": [{"message_id": f"{cid}-1", "role": "customer", "author_id": author, "text": text,
                          "created_at": f"{DAY}T10:00:00Z"},
                         {"message_id": f"{cid}-2", "role": "agent", "author_id": "AcmeSupport",
                          "text": f"Sorry to hear that! Please DM us about {cid}.", "created_at": f"{DAY}T10:05:00Z"}]}


def jsonl(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def land(lake) -> None:
    """u-9 writes two conversations (one malformed, so it is quarantined); others write the rest."""
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(
        conv("c-1", "u-9", "My parrot Kiwi chewed the charger cable"),
        conv("c-2", "u-5", "The blender lid cracked on day two"),
        conv("c-3", "u-6", "Where is the refund for the lamp I sent back?"),
        conv("c-4", "u-7", "Can I change the delivery slot to Friday morning?"),
        '{"conversation_id": "c-5", "messages": [{"author_id": "u-9", "text": "Kiwi again, broken line',
    ))
    lake.write_bytes(f"raw/feedback/dt={DAY}/f.jsonl", jsonl(
        {"event_id": "f-1", "conversation_id": "c-1", "message_id": "c-1-2", "rating": "down",
         "correction": "So sorry about Kiwi and the cable!", "model_version": "1", "created_at": f"{DAY}T11:00:00Z"},
        {"event_id": "f-2", "conversation_id": "c-2", "message_id": "c-2-2", "rating": "up", "correction": None,
         "model_version": "1", "created_at": f"{DAY}T11:00:00Z"}))


def log_records(lake) -> list[dict]:
    return [json.loads(lake.read_bytes(o.key)) for o in lake.list(f"{ERASURE_PREFIX}/")]


@pytest.mark.parametrize("text,error", [
    ("author u-1\nauthr u-2\nconversation\n# fine\nconversation c-1 extra\n",
     r"3 malformed line\(s\), nothing recorded:\n  list.txt:2: .*\n  list.txt:3: .*\n  list.txt:5: "),
    ("author u-1\nconversation c-1\nauthor u-1\n", r"list.txt: author id 'u-1' is given twice"),
    ("author replyloop:v3\n", r"the model itself"),
])
def test_a_bad_erasure_file_is_refused_whole(settings, lake, text, error):
    with pytest.raises(ErasureError, match=error):
        erase_subjects(settings, file_text=text, file_name="list.txt", requested_by="dpo", lake=lake)
    assert log_records(lake) == []


def test_an_id_given_twice_on_the_command_line_and_in_the_file_is_refused(settings, lake):
    with pytest.raises(ErasureError, match="author id 'u-1' is given twice"):
        erase_subjects(settings, authors=["u-1"], file_text="author u-1\n", requested_by="dpo", lake=lake)
    assert read_subject_file("author u-1  # ticket 42\n\nconversation c-9\n", "f") == [
        {"kind": "author", "id": "u-1"}, {"kind": "conversation", "id": "c-9"}]


def test_erasure_keeps_the_author_out_of_every_later_snapshot(settings, lake):
    land(lake)
    first = run_ingest(settings, lake=lake, now=NOW)
    assert first["counts"]["quarantined_by_reason"] == {"malformed_json": 1}
    out = erase_subjects(settings, authors=["u-9", "u-nobody"], requested_by="ticket-17", lake=lake)
    req = out["request"]
    assert req["matched"] == {"author:u-9": {"conversations": 1, "messages": 1},
                              "author:u-nobody": {"conversations": 0, "messages": 0}}
    assert req["unmatched"] == ["author:u-nobody"]
    [record] = log_records(lake)  # the log holds ids, who and when; no message text
    assert record["requested_by"] == "ticket-17" and "Kiwi" not in json.dumps(record)
    assert out["applied"]["status"] == "erasure_applied" and out["applied"]["rewritten"] == {
        f"conversations/dt={DAY}": 1, f"feedback/dt={DAY}": 1}
    _, messages, feedback = read_snapshot(lake)
    assert "u-9" not in set(messages["author_id"]) and not messages["text"].str.contains("Kiwi").any()
    assert feedback["event_id"].tolist() == ["f-2"]
    # the old snapshot still holds it until a purge; the current one does not use its conversation file
    assert Snapshot(lake, first["snapshot_id"]).tables()[0]["author_id"].to_pylist().count("u-9") == 1

    # backfill of the day, and a replay of its quarantine, bring nothing back
    again = run_ingest(settings, lake=lake, date=DAY, now=NOW)
    assert again["snapshot_id"] == out["applied"]["snapshot_id"]  # the same clean content, so the same snapshot
    counts = again["reingested"]["counts"]
    assert counts["erased"] == 2 and counts["quarantined"] == 0  # c-1 and the malformed line
    assert again["reingested"]["feedback_counts"]["erased"] == 1
    assert not lake.exists(f"quarantine/dt={DAY}/conversations.jsonl")  # its only line named u-9
    with pytest.raises(FileNotFoundError):
        replay_quarantine(lake, DAY, "conversations")
    _, messages, _ = read_snapshot(lake)
    assert sorted(messages["conversation_id"].unique()) == ["c-2", "c-3", "c-4"]


def test_an_erasure_waits_for_a_running_ingestion(settings, lake):
    land(lake)
    result = {}
    ingestion = threading.Thread(target=lambda: result.update(run_ingest(settings, lake=lake, now=NOW)))
    ingestion.start()
    deadline = time.monotonic() + 30
    while not lake.exists(LAKE_LOCK_KEY) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(lake.read_bytes(LAKE_LOCK_KEY))["owner"].startswith("ingestion")
    req = request_erasure(settings, [{"kind": "author", "id": "u-9"}], requested_by="dpo", lake=lake)
    ingestion.join()
    # recorded after the run finished: it saw the snapshot the run wrote (not the empty lake before it)
    assert req["snapshot_id"] == result["snapshot_id"] and req["matched"]["author:u-9"]["messages"] == 1
    assert run_ingest(settings, lake=lake, now=NOW)["status"] == "erasure_applied"


def test_a_held_lock_stops_erasure_and_ingestion_with_the_holders_name(settings, lake):
    land(lake)
    fast = settings.model_copy(update={"lake_lock_wait_seconds": 0.3})
    with lake_lock(lake, "ingestion of 2026-11-22", wait_seconds=0, ttl_seconds=60):
        with pytest.raises(LakeBusy, match="held by 'ingestion of 2026-11-22'.*did nothing"):
            request_erasure(fast, [{"kind": "author", "id": "u-9"}], requested_by="dpo", lake=lake)
        assert log_records(lake) == []
    with lake_lock(lake, "erasure request abc", wait_seconds=0, ttl_seconds=60):
        with pytest.raises(IngestError, match="held by 'erasure request abc'"):
            run_ingest(fast, lake=lake, now=NOW)
    assert not lake.exists("curated/conversations/CURRENT")
    # a lock whose holder died (past its expiry) is taken over
    with lake_lock(lake, "crashed run", wait_seconds=0, ttl_seconds=-1):
        assert run_ingest(fast, lake=lake, now=NOW)["status"] == "ok"
