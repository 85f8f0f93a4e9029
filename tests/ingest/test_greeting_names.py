"""Ingestion redacts names after a greeting as [NAME] in every turn (replyloop.pii, issue: greeting names)."""

from __future__ import annotations

from datetime import UTC, datetime

from replyloop.ingest.pipeline import read_snapshot, run_ingest
from replyloop.pii import drop_greeting_placeholder, find_leaks

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_curated_turns_hold_no_greeting_name(settings, demo_lake):
    manifest = run_ingest(settings, lake=demo_lake, now=NOW)
    assert manifest["status"] == "ok"
    assert manifest["pii_redactions"].get("NAME", 0) > 0
    assert manifest["counts"]["quarantined_by_reason"].get("pii_leak", 0) == 0
    _, messages, _ = read_snapshot(demo_lake)
    texts = messages["text"].tolist()
    assert [t for t in texts if any(s.kind == "NAME" for s in find_leaks(t))] == []
    agents = messages.loc[messages["role"] == "agent", "text"]
    assert agents.str.contains(r"^Hi \[NAME\]", regex=True).any()
    assert not any("[NAME]" in drop_greeting_placeholder(t) for t in agents if t.startswith("Hi [NAME]"))
