from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replyloop.ingest.normalize import RecordError, clean_text, normalize_conversation, parse_timestamp

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_clean_text():
    assert clean_text("  Caf\u0065\u0301 &amp;amp; tea &gt; coffee\u200b\x07\n\n ok  ") == "Café & tea > coffee ok"


@pytest.mark.parametrize("raw,expected", [
    ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"),
    ("2026-11-20T12:00:00+02:00", "2026-11-20T10:00:00Z"),
    ("2026-11-20 10:00:00", "2026-11-20T10:00:00Z"),
    ("Tue Oct 31 22:10:47 +0000 2017", "2017-10-31T22:10:47Z"),
    ("Tue, 31 Oct 2017 23:10:47 +0100", "2017-10-31T22:10:47Z"),
])
def test_timestamps_to_utc(raw, expected):
    assert parse_timestamp(raw, field="t", now=NOW) == expected


def test_role_aliases_and_defaults():
    conv = normalize_conversation({"conversation_id": 7, "messages": [
        {"message_id": "1", "role": "User", "text": "hi", "created_at": "2026-11-20T10:00:00Z"},
        {"message_id": "2", "role": "brand", "text": "hello", "created_at": "2026-11-20T10:01:00Z"}]},
        now=NOW, max_chars=100)
    assert [m["role"] for m in conv["messages"]] == ["customer", "agent"]
    assert conv["conversation_id"] == "7" and conv["channel"] == "public_reply" and conv["language"] is None


def test_unknown_channel():
    with pytest.raises(RecordError) as err:
        normalize_conversation({"conversation_id": "c", "channel": "email", "messages": []}, now=NOW, max_chars=9)
    assert err.value.reason == "unknown_channel"
