"""Tests for replyloop.demo_data: determinism, the data contract and the reported counts."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re

import pytest

from replyloop.demo_data import generate_landing, iter_canonical_conversations, luhn_card

START = dt.date(2026, 11, 20)
TWCS_HEADER = ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
               "in_response_to_tweet_id"]
FEEDBACK_FIELDS = {"event_id", "conversation_id", "message_id", "rating", "correction", "model_version",
                   "created_at"}
ISO_Z = re.compile(r"^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}Z$")


def _generate(**kwargs) -> tuple[dict[str, bytes], dict]:
    files: dict[str, bytes] = {}

    def write(path: str, data: bytes) -> None:
        assert path not in files, f"{path} written twice"
        files[path] = data

    summary = generate_landing(write, start_date=START, **kwargs)
    return files, summary


@pytest.fixture(scope="module")
def landing() -> tuple[dict[str, bytes], dict]:
    return _generate()


def _text(path: str, data: bytes) -> str:
    return (gzip.decompress(data) if path.endswith(".gz") else data).decode("utf-8")


def _partition_day(path: str) -> str:
    return re.search(r"dt=(\d{4}-\d{2}-\d{2})/", path).group(1)


def _canonical_lines(files: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(path, line) for path, data in sorted(files.items()) if path.startswith("raw/conversations/")
            for line in _text(path, data).splitlines()]


def _classify(line: str, day: str) -> tuple[str, dict | None]:
    """'ok' or the malformed kind of one canonical line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return "broken_json", None
    if not isinstance(record.get("messages"), list):
        return "missing_messages", record
    if any(m["role"] not in {"customer", "agent"} for m in record["messages"]):
        return "unknown_role", record
    if ISO_Z.match(record["created_at"]).group(1) != day:
        return "future_created_at", record
    if any(not m["text"].strip() for m in record["messages"]):
        return "empty_text", record
    return "ok", record


def _classified(files: dict[str, bytes]) -> list[tuple[str, str, dict | None]]:
    return [(path, *_classify(line, _partition_day(path))) for path, line in _canonical_lines(files)]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


# --- determinism ----------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(landing):
    files, summary = landing
    again, summary_again = _generate()
    assert again == files
    assert summary_again == summary


def test_different_seed_gives_different_bytes(landing):
    files, _ = landing
    other, _ = _generate(seed=8)
    assert set(other) == set(files)
    assert all(other[p] != files[p] for p in files)


def test_iter_canonical_is_deterministic_and_valid():
    first = list(iter_canonical_conversations(300, seed=3))
    assert first == list(iter_canonical_conversations(300, seed=3))
    assert first != list(iter_canonical_conversations(300, seed=4))
    assert len(first) == 300
    assert len({c["conversation_id"] for c in first}) == 300
    day = "2026-11-20"
    for conv in first:
        assert _classify(json.dumps(conv), day) == ("ok", conv)
        assert conv["messages"][0]["role"] == "customer"
        assert 2 <= len(conv["messages"]) <= 7
    other_day = next(iter_canonical_conversations(1, day=dt.date(2025, 1, 2)))
    assert other_day["created_at"].startswith("2025-01-02T")


# --- files and canonical records ------------------------------------------------------------------
def test_file_layout(landing):
    files, summary = landing
    assert summary["files"] == list(files)
    for day in ("2026-11-20", "2026-11-21"):
        assert f"raw/conversations/dt={day}/part-0000.jsonl" in files
        assert f"raw/conversations/dt={day}/part-0001.jsonl.gz" in files
        assert f"raw/twcs/dt={day}/twcs-0000.csv" in files
        assert f"raw/feedback/dt={day}/feedback-0000.jsonl" in files
    gz = [p for p in files if p.endswith(".gz")]
    assert gz
    for path in gz:
        assert files[path][:2] == b"\x1f\x8b"
        assert gzip.decompress(files[path]).decode("utf-8").count("\n") > 10


def test_canonical_records_follow_the_contract(landing):
    files, _ = landing
    ok = [(path, rec) for path, kind, rec in _classified(files) if kind == "ok"]
    assert len(ok) > 200
    channels, languages = set(), set()
    for path, rec in ok:
        day = _partition_day(path)
        assert rec["platform"] == "twitter"
        assert rec["channel"] in {"public_reply", "direct_message"}
        channels.add(rec["channel"])
        languages.add(rec.get("language"))
        assert rec["messages"][0]["role"] == "customer"
        roles = [m["role"] for m in rec["messages"]]
        assert roles.count("agent") in (1, 2, 3) and roles.count("customer") >= roles.count("agent")
        for m in rec["messages"]:
            assert set(m) == {"message_id", "role", "author_id", "text", "created_at"}
            assert ISO_Z.match(m["created_at"]).group(1) == day
            assert (m["author_id"] == "AcmeSupport") == (m["role"] == "agent")
        assert [m["created_at"] for m in rec["messages"]] == sorted(m["created_at"] for m in rec["messages"])
    assert channels == {"public_reply", "direct_message"}
    assert languages == {"en", None}


def test_malformed_records_are_few_and_counted(landing):
    files, summary = landing
    classified = _classified(files)
    bad = [kind for _, kind, _ in classified if kind != "ok"]
    assert len(bad) == summary["malformed"]
    assert set(bad) == {"broken_json", "missing_messages", "unknown_role", "future_created_at", "empty_text"}
    assert 0.02 <= len(bad) / len(classified) <= 0.06
    assert any(rec and rec["created_at"].startswith("2099-") for _, _, rec in classified)
    assert any(rec and any(m["role"] == "bot" for m in rec.get("messages", [])) for _, _, rec in classified)


def test_duplicates_are_counted(landing):
    files, summary = landing
    seen: dict[str, list[str]] = {}
    for _, kind, rec in _classified(files):
        if kind == "ok":
            key = json.dumps([rec["channel"], rec["created_at"],
                              [(m["role"], m["author_id"], m["text"], m["created_at"]) for m in rec["messages"]]])
            seen.setdefault(key, []).append(rec["conversation_id"])
    extra_copies = sum(len(ids) - 1 for ids in seen.values())
    assert extra_copies == summary["duplicates"] > 0
    assert 0.02 <= extra_copies / summary["conversations"] <= 0.06
    groups = [ids for ids in seen.values() if len(ids) > 1]
    assert any(len(set(ids)) < len(ids) for ids in groups)  # same conversation_id repeated
    assert any(len(set(ids)) > 1 for ids in groups)  # same content under a new conversation_id


def test_summary_counts_match_files(landing):
    files, summary = landing
    lines = _canonical_lines(files)
    assert summary["conversations"] == len(lines)
    messages = sum(len(rec["messages"]) for _, _, rec in _classified(files)
                   if rec is not None and isinstance(rec.get("messages"), list))
    assert summary["messages"] == messages
    twcs = [row for p, d in files.items() if p.startswith("raw/twcs/")
            for row in csv.DictReader(io.StringIO(_text(p, d)))]
    assert summary["twcs_rows"] == len(twcs)
    assert summary["twcs_threads"] == sum(1 for r in twcs if r["in_response_to_tweet_id"] == "")
    feedback = [line for p, d in files.items() if p.startswith("raw/feedback/") for line in _text(p, d).splitlines()]
    assert summary["feedback_events"] == len(feedback) > 0
    assert set(summary) == {"files", "conversations", "twcs_threads", "twcs_rows", "feedback_events",
                            "malformed", "duplicates", "messages"}


# --- TWCS -----------------------------------------------------------------------------------------
def test_twcs_csv_layout_and_links(landing):
    files, _ = landing
    rows = []
    for path in (p for p in files if p.startswith("raw/twcs/")):
        reader = csv.DictReader(io.StringIO(_text(path, files[path])))
        assert reader.fieldnames == TWCS_HEADER
        rows += list(reader)
    by_id = {r["tweet_id"]: r for r in rows}
    assert len(by_id) == len(rows)
    orphans, multi = 0, 0
    for r in rows:
        assert r["inbound"] in {"True", "False"}
        assert dt.datetime.strptime(r["created_at"], "%a %b %d %H:%M:%S %z %Y").tzinfo is not None
        if r["inbound"] == "True":
            assert r["author_id"].isdigit() and r["text"].startswith("@AcmeSupport ")
        else:
            assert r["author_id"] == "AcmeSupport" and re.match(r"^@\d+ ", r["text"])
        parent = r["in_response_to_tweet_id"]
        if parent and parent not in by_id:
            orphans += 1
        elif parent:
            assert r["tweet_id"] in by_id[parent]["response_tweet_id"].split(",")
            if r["inbound"] == "False":
                assert r["text"].startswith(f"@{by_id[parent]['author_id']} ")
        responses = [t for t in r["response_tweet_id"].split(",") if t]
        multi += len(responses) > 1
        for child in responses:
            assert by_id[child]["in_response_to_tweet_id"] == r["tweet_id"]
    assert orphans == 1
    assert multi > 0
    assert '"' in _text("x.csv", files["raw/twcs/dt=2026-11-20/twcs-0000.csv"])  # commas in text got quoted


# --- feedback -------------------------------------------------------------------------------------
def test_feedback_refers_to_agent_messages(landing):
    files, _ = landing
    agent_messages = {}
    for _, kind, rec in _classified(files):
        if kind == "ok":
            for m in rec["messages"]:
                if m["role"] == "agent":
                    agent_messages[m["message_id"]] = rec["conversation_id"]
    events = [(p, json.loads(line)) for p, d in files.items() if p.startswith("raw/feedback/")
              for line in _text(p, d).splitlines()]
    kinds = set()
    for path, e in events:
        assert set(e) == FEEDBACK_FIELDS
        assert agent_messages[e["message_id"]] == e["conversation_id"]
        assert e["rating"] in {"up", "down"}
        if e["correction"] is not None:  # a better agent reply in the brand voice
            assert e["rating"] == "down" and re.search(r"\^[A-Z]{2}$", e["correction"])
        assert ISO_Z.match(e["created_at"]).group(1) == _partition_day(path)
        kinds.add((e["rating"], e["correction"] is not None))
    assert kinds == {("up", False), ("down", False), ("down", True)}
    assert len({e["event_id"] for _, e in events}) == len(events)


# --- noise and PII --------------------------------------------------------------------------------
def _all_customer_text(files: dict[str, bytes]) -> str:
    texts = [m["text"] for _, kind, rec in _classified(files) if kind == "ok"
             for m in rec["messages"] if m["role"] == "customer"]
    return "\n".join(texts)


def test_pii_of_each_kind_appears(landing):
    files, _ = landing
    text = _all_customer_text(files)
    assert re.search(r"[\w.]+@[\w-]+\.[\w.]+", text)
    phones = re.findall(r"\+\d{1,2}[ .\d]{8,}\d|\(\d{3}\) \d{3}-\d{4}|\b\d{3}-\d{3}-\d{4}\b", text)
    assert any(p.startswith("+44") for p in phones) and any(p.startswith("+49") for p in phones)
    assert len({re.sub(r"\d", "9", p) for p in phones}) >= 4  # several formats, national and international
    cards = [re.sub(r"\D", "", c) for c in re.findall(r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b", text)]
    assert cards and all(_luhn_ok(c) for c in cards)
    assert "221B Baker Street" in text


def test_luhn_card_passes_luhn():
    import random

    rng = random.Random(1)
    cards = [luhn_card(rng) for _ in range(200)]
    assert all(len(c) == 16 and c.isdigit() and _luhn_ok(c) for c in cards)
    assert not _luhn_ok("4111111111111112")


def test_realistic_noise_appears(landing):
    files, _ = landing
    text = _all_customer_text(files)
    everything = "\n".join(line for _, line in _canonical_lines(files))
    assert "@AcmeSupport " in text
    assert re.search(r"@[a-z]+_[a-z]?\d+", everything)  # customer handles
    assert re.search(r"https?://|pic\.twitter\.com/", text)
    assert "&amp;" in everything and "&#39;" in everything
    assert re.search(r"[\U0001F300-\U0001FAFF]", text)
    assert "  " in text or "\n" in text
    assert "^" in everything and "DM us" in everything  # agent voice and signature
