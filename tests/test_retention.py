"""Retention: `cleanup` deletes what is past its days and no longer referenced, and says what it deleted."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from click.testing import CliRunner

from replyloop.ingest.pipeline import read_snapshot, run_ingest
from replyloop.ingest.snapshot import current_id, referenced_folders
from replyloop.privacy.purge import stored_snapshots
from replyloop.privacy.retention import cleanup


def conv(cid: str, day: str, text: str) -> dict:
    return {"conversation_id": cid, "platform": "twitter", "channel": "public_reply", "created_at": f"{day}T10:00:00Z",
            "messages": [{"message_id": f"{cid}-1", "role": "customer", "author_id": f"u-{cid}", "text": text,
                          "created_at": f"{day}T10:00:00Z"},
                         {"message_id": f"{cid}-2", "role": "agent", "author_id": "AcmeSupport",
                          "text": f"Thanks, we're on it ({cid}).", "created_at": f"{day}T10:05:00Z"}]}


TOPICS = ["The kettle whistles too loudly", "My scarf order shows as lost in transit",
          "Is the winter coat waterproof or only resistant?", "Can I swap the blue mug for a green one?",
          "The discount code from the newsletter fails at checkout", "How long does a refund to a gift card take?"]


def batch(day: str, prefix: str) -> list[dict]:
    """Four distinct conversations (enough good records to keep one bad line under the quarantine limit)."""
    return [conv(f"{prefix}-{k}", day, f"{TOPICS[k]} ({prefix})") for k in range(4)]


def land(lake, day: str, name: str, *records) -> None:
    lake.write_bytes(f"raw/conversations/dt={day}/{name}.jsonl",
                     "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode())


def test_cleanup_deletes_what_is_old_and_unreferenced(settings, lake, monkeypatch):
    land(lake, "2026-09-01", "a", *batch("2026-09-01", "c-1"), "not json")
    first = run_ingest(settings, lake=lake, now=datetime(2026, 9, 2, tzinfo=UTC))
    land(lake, "2026-09-01", "b", conv("c-2", "2026-09-01", "My scarf order shows as lost in transit"))
    second = run_ingest(settings, lake=lake, date="2026-09-01", now=datetime(2026, 9, 3, tzinfo=UTC))
    land(lake, "2026-11-01", "a", conv("c-3", "2026-11-01", "Is the winter coat waterproof or only resistant?"))
    third = run_ingest(settings, lake=lake, now=datetime(2026, 11, 2, tzinfo=UTC))
    land(lake, "2026-11-02", "a", conv("c-4", "2026-11-02", "Not ingested yet: please keep me"))
    land(lake, "2026-08-01", "old", conv("c-5", "2026-08-01", "Landed long ago and never ingested"))
    assert third["previous_snapshot"] == second["snapshot_id"] != first["snapshot_id"]
    assert set(stored_snapshots(lake)) == {first["snapshot_id"], second["snapshot_id"], third["snapshot_id"]}

    monkeypatch.setattr(settings, "raw_retention_days", 60)
    monkeypatch.setattr(settings, "quarantine_retention_days", 30)
    monkeypatch.setattr(settings, "snapshot_retention_days", 30)
    plan = cleanup(settings, lake=lake, today=date(2026, 11, 10), dry_run=True)
    assert lake.exists("raw/conversations/dt=2026-09-01/a.jsonl")  # a dry run deletes nothing
    out = cleanup(settings, lake=lake, today=date(2026, 11, 10))
    assert out["deleted"] == plan["deleted"] == {
        "raw": ["raw/conversations/dt=2026-09-01"],  # ingested and old; 2026-08-01 was never ingested: kept
        "quarantine": ["quarantine/dt=2026-09-01"],
        "snapshots": [f"curated/conversations/{first['snapshot_id']}"],  # second: CURRENT still uses its file
    }
    assert lake.exists("raw/conversations/dt=2026-08-01/old.jsonl")
    assert lake.exists("raw/conversations/dt=2026-11-02/a.jsonl")
    assert second["snapshot_id"] in referenced_folders(lake, current_id(lake))
    _, messages, _ = read_snapshot(lake)  # the current snapshot is whole
    assert messages["conversation_id"].nunique() == 6


def test_cleanup_command_reports_what_it_deleted(settings, lake):
    from replyloop.cli import main

    land(lake, "2020-01-01", "a", *batch("2020-01-01", "c-1"), "{broken")
    run_ingest(settings, lake=lake, now=datetime(2020, 1, 2, tzinfo=UTC))
    result = CliRunner().invoke(main, ["cleanup"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 raw folder(s)\n  raw/conversations/dt=2020-01-01" in result.output
    assert "deleted 1 quarantine folder(s)\n  quarantine/dt=2020-01-01" in result.output
    assert "deleted 0 snapshots folder(s)" in result.output  # CURRENT stays, however old
