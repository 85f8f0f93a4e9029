"""The ingestion run on generated landing data and on each kind of bad input."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest

from replyloop.contract import CURRENT_KEY
from replyloop.ingest.pipeline import IngestError, read_manifest, read_snapshot, run_ingest
from replyloop.lake import LocalLake

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = "2026-11-22"


def conv(cid: str, *, customer="Where is my order #A12345?", agent="Sorry! DM us and we'll check.", **extra):
    return {"conversation_id": cid, "platform": "twitter", "channel": "public_reply",
            "created_at": f"{DAY}T10:00:00Z", "language": "en",
            "messages": [{"message_id": f"{cid}-1", "role": "customer", "author_id": "u1", "text": customer,
                          "created_at": f"{DAY}T10:00:00Z"},
                         {"message_id": f"{cid}-2", "role": "agent", "author_id": "AcmeSupport", "text": agent,
                          "created_at": f"{DAY}T10:05:00Z"}], **extra}


def jsonl(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def quarantine(lake, kind="conversations", day=DAY) -> list[dict]:
    key = f"quarantine/dt={day}/{kind}.jsonl"
    return [json.loads(line) for line in lake.read_bytes(key).decode().splitlines()] if lake.exists(key) else []


def assert_accounted(manifest):
    c = manifest["counts"]
    assert c["raw"] == c["curated"] + c["quarantined"] + c["duplicates"]
    assert sum(c["quarantined_by_reason"].values()) == c["quarantined"]


def test_demo_data_end_to_end(settings, demo_lake):
    manifest = run_ingest(settings, lake=demo_lake, now=NOW)
    assert manifest["status"] == "ok"
    assert_accounted(manifest)
    c = manifest["counts"]
    summary = demo_lake.summary
    assert c["raw"] == summary["conversations"] + summary["twcs_threads"] + 1  # + the orphan TWCS reply
    assert c["duplicates"] >= summary["duplicates"]
    assert c["quarantined_by_reason"]["broken_thread"] == 1
    for reason in ("malformed_json", "unknown_role", "future_timestamp", "empty_text", "missing_field"):
        assert c["quarantined_by_reason"].get(reason, 0) >= 1, reason
    assert manifest["validation"]["success"] is True
    assert manifest["validation"]["data_docs"].endswith("index.html")
    assert set(manifest["pii_redactions"]) >= {"EMAIL", "PHONE", "CARD"}
    snap_id, messages, feedback = read_snapshot(demo_lake)
    assert snap_id == manifest["snapshot_id"] == demo_lake.read_bytes(CURRENT_KEY).decode()
    assert messages["conversation_id"].nunique() == c["curated"]
    assert not messages["text"].str.contains(r"[\w.+-]+@[\w-]+\.\w+", regex=True).any(), "an email survived"
    assert set(messages["role"]) == {"customer", "agent"}
    assert set(messages["split"]) == {"train", "eval"}
    assert len(feedback) > 0 and set(feedback["rating"]) <= {"up", "down"}
    assert manifest["feedback_counts"]["raw"] == summary["feedback_events"]


def test_rerunning_a_day_is_idempotent_and_incremental(settings, demo_lake):
    first = run_ingest(settings, lake=demo_lake, now=NOW)
    again = run_ingest(settings, lake=demo_lake, now=NOW)
    assert again["status"] == "no_new_data" and again["snapshot_id"] == first["snapshot_id"]
    backfill = run_ingest(settings, lake=demo_lake, date="2026-11-21", now=NOW)
    assert backfill["snapshot_id"] == first["snapshot_id"]
    assert read_manifest(demo_lake)["snapshot_id"] == first["snapshot_id"]


def test_a_new_day_extends_the_snapshot(settings, lake):
    lake.write_bytes("raw/conversations/dt=2026-11-21/a.jsonl", jsonl(conv("c-1")))
    first = run_ingest(settings, lake=lake, now=NOW)
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("c-2", customer="My refund is late")))
    second = run_ingest(settings, lake=lake, now=NOW)
    assert second["previous_snapshot"] == first["snapshot_id"] != second["snapshot_id"]
    assert second["partitions"] == [f"conversations/dt={DAY}"]
    assert second["totals"]["conversations"] == 2
    # the old snapshot is still there, untouched
    assert read_snapshot(lake, first["snapshot_id"])[1]["conversation_id"].nunique() == 1


@pytest.mark.parametrize("name,payload,reason", [
    ("malformed json", b'{"conversation_id": "x", "messages": [\n', "malformed_json"),
    ("not an object", b"[1, 2, 3]\n", "malformed_json"),
    ("invalid utf-8", b'{"conversation_id": "\xff\xfe"}\n', "invalid_utf8"),
    ("missing messages", jsonl({"conversation_id": "c-9"}), "missing_field"),
    ("mistyped messages", jsonl({"conversation_id": "c-9", "messages": "hello"}), "bad_type"),
    ("unknown role", jsonl({**conv("c-9"), "messages": [{**conv("c-9")["messages"][0], "role": "bot"}]}),
     "unknown_role"),
    ("future timestamp", jsonl({**conv("c-9"), "created_at": "2099-01-01T00:00:00Z"}), "future_timestamp"),
    ("bad timestamp", jsonl({**conv("c-9"), "created_at": "yesterday-ish"}), "bad_timestamp"),
    ("1 MB message", jsonl(conv("c-9", customer="x" * 1_000_000)), "too_long"),
    ("agent only", jsonl({**conv("c-9"), "messages": conv("c-9")["messages"][1:]}), "no_customer_turn"),
    ("duplicate message ids", jsonl({**conv("c-9"), "messages": [
        conv("c-9")["messages"][0], {**conv("c-9")["messages"][1], "message_id": "c-9-1"}]}), "duplicate_message_id"),
    ("golden prompt", jsonl(conv("c-9", customer="Placed an order Thursday and the confirmation email still says 'processing'. Is that normal?")),
     "eval_contamination"),
])
def test_bad_record_is_quarantined_with_reason(settings, lake, name, payload, reason):
    lake.write_bytes(f"raw/conversations/dt={DAY}/good.jsonl", jsonl(*(conv(f"ok-{i}") if i == 0 else
                                                                     conv(f"ok-{i}", customer=f"Question {i} about my parcel to Leeds")
                                                                     for i in range(4))))
    lake.write_bytes(f"raw/conversations/dt={DAY}/bad.jsonl", payload)
    manifest = run_ingest(settings, lake=lake, now=NOW)
    assert_accounted(manifest)
    assert manifest["counts"]["quarantined_by_reason"] == {reason: 1}, name
    [line] = quarantine(lake)
    assert line["reason"] == reason
    assert line["source"] == f"raw/conversations/dt={DAY}/bad.jsonl" and line["line"] == 1
    assert "bad.jsonl:1" in line["message"]
    assert line["raw"] is not None
    if reason == "too_long":
        assert "clipped" in json.dumps(line["raw"]) or len(json.dumps(line["raw"])) < 1_100_000


def test_truncated_gzip_keeps_what_was_read_and_quarantines_the_rest(settings, lake):
    body = gzip.compress(jsonl(*(conv(f"c-{i}", customer=f"Parcel {i} has not arrived in Leeds yet")
                                 for i in range(50))))
    lake.write_bytes(f"raw/conversations/dt={DAY}/cut.jsonl.gz", body[: len(body) // 2])
    manifest = run_ingest(settings, lake=lake, now=NOW)
    assert_accounted(manifest)
    assert manifest["counts"]["quarantined_by_reason"] == {"unreadable_file": 1}
    assert 0 < manifest["counts"]["curated"] < 50
    [line] = quarantine(lake)
    assert "cut.jsonl.gz" in line["message"] and "cannot read past line" in line["message"]


def test_empty_partition_stops_the_run_naming_the_file(settings, lake):
    lake.write_bytes(f"raw/conversations/dt={DAY}/empty.jsonl", b"")
    with pytest.raises(IngestError, match=r"hold no records: .*dt=2026-11-22/empty.jsonl is empty"):
        run_ingest(settings, lake=lake, now=NOW)
    assert not lake.exists(CURRENT_KEY)


def test_empty_file_is_reported_not_lost(settings, lake):
    lake.write_bytes(f"raw/conversations/dt={DAY}/good.jsonl", jsonl(conv("c-1")))
    lake.write_bytes(f"raw/conversations/dt={DAY}/empty.jsonl", b"")
    manifest = run_ingest(settings, lake=lake, now=NOW)
    assert manifest["empty_files"] == [f"raw/conversations/dt={DAY}/empty.jsonl"]
    assert manifest["counts"]["curated"] == 1


TWCS_HEADER = "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"


def lenient(settings):
    """Tiny hand-made batches are mostly bad on purpose: lift the batch-level quarantine-rate gate."""
    return settings.model_copy(update={"max_quarantine_rate": 1.0})


def test_twcs_threads_orphans_and_cycles(settings, lake):
    rows = [
        '1,115712,True,Tue Oct 31 22:10:47 +0000 2017,"@AcmeSupport my parcel to Leeds is late, help",2,',
        '2,AcmeSupport,False,Tue Oct 31 22:12:00 +0000 2017,"@115712 Sorry! DM us your order number",3,1',
        '3,115712,True,Tue Oct 31 22:15:00 +0000 2017,@AcmeSupport sent you a DM,,2',
        '10,AcmeSupport,False,Tue Oct 31 23:00:00 +0000 2017,@9 glad we could help,,999',  # parent missing
        '20,115713,True,Tue Oct 31 23:10:00 +0000 2017,@AcmeSupport loop a,21,21',           # cycle 20 <-> 21
        '21,AcmeSupport,False,Tue Oct 31 23:11:00 +0000 2017,@115713 loop b,20,20',
    ]
    lake.write_bytes(f"raw/twcs/dt={DAY}/t.csv", (TWCS_HEADER + "\n".join(rows) + "\n").encode())
    manifest = run_ingest(lenient(settings), lake=lake, now=NOW)
    assert_accounted(manifest)
    assert manifest["counts"]["curated"] == 1
    assert manifest["counts"]["quarantined_by_reason"] == {"broken_thread": 2}
    messages = read_snapshot(lake)[1]
    assert list(messages["role"]) == ["customer", "agent", "customer"]
    assert messages["created_at"].iloc[0] == "2017-10-31T22:10:47Z"
    assert messages["conversation_id"].iloc[0] == "twcs-1"
    reasons = [q["message"] for q in quarantine(lake, "twcs")]
    assert any("missing tweet 999" in m for m in reasons) and any("cycle" in m for m in reasons)


def test_twcs_broken_quoting_and_short_rows(settings, lake):
    rows = ['1,115712,True,Tue Oct 31 22:10:47 +0000 2017,"@AcmeSupport where is my parcel to Leeds",2,',
            '2,AcmeSupport,False,Tue Oct 31 22:12:00 +0000 2017,"@115712 DM us please",,1',
            '7,115712,True,Tue Oct 31 22:10:47 +0000 2017',
            '8,115712,True,Tue Oct 31 22:10:47 +0000 2017,"an "unbalanced" quote,,',
            ]
    lake.write_bytes(f"raw/twcs/dt={DAY}/t.csv", (TWCS_HEADER + "\n".join(rows) + "\n").encode())
    manifest = run_ingest(lenient(settings), lake=lake, now=NOW)
    assert_accounted(manifest)
    assert manifest["counts"]["curated"] == 1
    assert manifest["counts"]["quarantined_by_reason"] == {"malformed_csv": 2}


def test_csv_missing_columns_is_a_schema_change(settings, lake):
    lake.write_bytes(f"raw/twcs/dt={DAY}/t.csv", b"tweet_id,author_id,text\n1,2,hello\n")
    with pytest.raises(IngestError, match=r"schema change in .*t\.csv: missing column\(s\) created_at"):
        run_ingest(settings, lake=lake, now=NOW)
    assert not lake.exists(CURRENT_KEY)


def test_high_quarantine_rate_fails_and_keeps_current(settings, lake):
    lake.write_bytes("raw/conversations/dt=2026-11-21/a.jsonl", jsonl(conv("c-1")))
    before = run_ingest(settings, lake=lake, now=NOW)["snapshot_id"]
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("c-2"), *["{broken"] * 5))
    with pytest.raises(IngestError, match=r"quarantine rate 83% is above the limit 25%.*malformed_json=5"):
        run_ingest(settings, lake=lake, now=NOW)
    assert lake.read_bytes(CURRENT_KEY).decode() == before
    assert len(quarantine(lake)) == 5, "the quarantine is still written for inspection"


def test_volume_jump_fails(settings, lake):
    for i, day in enumerate(["2026-11-17", "2026-11-18", "2026-11-19"]):
        lake.write_bytes(f"raw/conversations/dt={day}/a.jsonl",
                         jsonl(conv(f"v{i}", customer=f"Parcel number {i} to Leeds is late")))
        run_ingest(settings, lake=lake, now=NOW)
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl",
                     jsonl(*(conv(f"big-{i}", customer=f"Order {i} never arrived in city {i}") for i in range(40))))
    with pytest.raises(IngestError, match="volume check failed: 40 records per partition"):
        run_ingest(settings, lake=lake, now=NOW)


def test_missing_day_names_the_prefix(settings, lake):
    with pytest.raises(IngestError, match=r"no landing data for dt=2026-01-01: nothing under .*raw/conversations/dt=2026-01-01"):
        run_ingest(settings, lake=lake, date="2026-01-01", now=NOW)


def test_feedback_to_unknown_message_is_quarantined(settings, lake):
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("c-1")))
    events = [{"event_id": "f-1", "conversation_id": "c-1", "message_id": "c-1-2", "rating": "down",
               "correction": "Sorry about that! Please DM us your order number.", "model_version": "1",
               "created_at": f"{DAY}T11:00:00Z"},
              {"event_id": "f-2", "conversation_id": "nope", "message_id": "m", "rating": "up", "correction": None,
               "model_version": None, "created_at": f"{DAY}T11:00:00Z"},
              {"event_id": "f-3", "conversation_id": "c-1", "message_id": "c-1-2", "rating": "meh",
               "created_at": f"{DAY}T11:00:00Z"}]
    lake.write_bytes(f"raw/feedback/dt={DAY}/f.jsonl", jsonl(*events))
    manifest = run_ingest(settings, lake=lake, now=NOW)
    assert manifest["feedback_counts"] == {"raw": 3, "curated": 1, "quarantined": 2,
                                           "quarantined.bad_rating": 1, "quarantined.unknown_conversation": 1}
    fb = read_snapshot(lake)[2]
    assert list(fb["event_id"]) == ["f-1"]


def test_snapshot_is_parquet_with_contract_schema(settings, demo_lake):
    """One sorted Parquet file per partition, each with the contract's schema and the content hash that
    the manifest records; the snapshot id hashes those."""
    from replyloop.contract import FEEDBACK_SCHEMA, MESSAGE_SCHEMA
    from replyloop.ingest.snapshot import digest, snapshot_id

    manifest = run_ingest(settings, lake=demo_lake, now=NOW)
    base = f"curated/conversations/{manifest['snapshot_id']}"
    assert sorted(manifest["parts"]) == manifest["partitions"], "a file for every partition read"
    assert {p.split("/")[0] for p in manifest["parts"]} == {"conversations", "twcs", "feedback"}
    for name, entry in manifest["parts"].items():
        assert entry["key"] == f"{manifest['snapshot_id']}/parts/{name}.parquet"
        table = pq.read_table(io.BytesIO(demo_lake.read_bytes(f"curated/conversations/{entry['key']}")))
        schema = FEEDBACK_SCHEMA if name.startswith("feedback/") else MESSAGE_SCHEMA
        assert table.schema.names == schema.names and table.num_rows == entry["rows"]
        assert digest(table.cast(schema)) == entry["sha256"], name
        assert set(table["partition"].to_pylist()) <= {name}
        frame = table.to_pandas()
        keys = ["event_id"] if name.startswith("feedback/") else ["conversation_id", "turn"]
        assert frame.equals(frame.sort_values(keys).reset_index(drop=True)), f"{name} is not sorted"
    assert snapshot_id(manifest["parts"]) == manifest["snapshot_id"]
    stored = json.loads(demo_lake.read_bytes(f"{base}/manifest.json"))
    assert stored["counts"] == manifest["counts"]
    assert stored["totals"]["messages"] == len(read_snapshot(demo_lake)[1])
    assert isinstance(pd.Timestamp(stored["created_at"]), pd.Timestamp)


def test_a_new_day_refers_to_the_files_of_the_other_partitions(settings, lake):
    """Nothing is rewritten or copied: the new manifest points at the earlier snapshot's file."""
    from replyloop.ingest.snapshot import referenced_folders

    lake.write_bytes("raw/conversations/dt=2026-11-21/a.jsonl", jsonl(conv("c-1", customer="Where is parcel 1?")))
    first = run_ingest(settings, lake=lake, now=NOW)
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("c-2", customer="Where is parcel 2?")))
    second = run_ingest(settings, lake=lake, now=NOW)
    assert second["parts"]["conversations/dt=2026-11-21"] == first["parts"]["conversations/dt=2026-11-21"]
    assert second["parts"][f"conversations/dt={DAY}"]["key"].startswith(second["snapshot_id"] + "/")
    assert sorted(o.key.rsplit("/", 1)[-1] for o in lake.list(f"curated/conversations/{second['snapshot_id']}/")) \
        == [f"dt={DAY}.parquet", "manifest.json"]
    assert referenced_folders(lake, second["snapshot_id"]) == {first["snapshot_id"], second["snapshot_id"]}
    assert second["totals"]["conversations"] == 2
    assert set(read_snapshot(lake)[1]["conversation_id"]) == {"c-1", "c-2"}


def test_a_snapshot_of_the_first_layout_is_read_and_carried_over(settings, lake):
    """Snapshots written before the per-partition layout (one messages.parquet, one feedback.parquet)."""
    import pyarrow as pa

    from replyloop.contract import FEEDBACK_SCHEMA, MESSAGE_SCHEMA
    from replyloop.ingest.snapshot import parquet_bytes

    lake.write_bytes("raw/conversations/dt=2026-11-21/a.jsonl", jsonl(conv("c-1", customer="Where is parcel 1?")))
    first = run_ingest(settings, lake=lake, now=NOW)
    _, messages, feedback = read_snapshot(lake)
    legacy = "curated/conversations/0123456789abcdef"
    lake.write_bytes(f"{legacy}/messages.parquet", parquet_bytes(pa.Table.from_pandas(messages, schema=MESSAGE_SCHEMA,
                                                                                      preserve_index=False)))
    lake.write_bytes(f"{legacy}/feedback.parquet", parquet_bytes(pa.Table.from_pandas(feedback, schema=FEEDBACK_SCHEMA,
                                                                                      preserve_index=False)))
    lake.write_bytes(f"{legacy}/manifest.json", json.dumps({k: v for k, v in first.items() if k != "parts"}).encode())
    lake.write_bytes(CURRENT_KEY, b"0123456789abcdef")
    assert read_snapshot(lake)[1].equals(messages)
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("c-2", customer="Where is parcel 2?")))
    second = run_ingest(settings, lake=lake, now=NOW)
    assert second["previous_snapshot"] == "0123456789abcdef"
    carried, original = second["parts"]["conversations/dt=2026-11-21"], first["parts"]["conversations/dt=2026-11-21"]
    assert carried["sha256"] == original["sha256"] and carried["key"].startswith(second["snapshot_id"] + "/")
    assert set(read_snapshot(lake)[1]["conversation_id"]) == {"c-1", "c-2"}


def test_quarantine_can_be_replayed_after_a_hand_fix(settings, lake):
    from replyloop.ingest.replay import replay_quarantine

    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl",
                     jsonl(*(conv(f"ok-{i}", customer=f"Parcel {i} to Leeds is late") for i in range(5)),
                           {**conv("fixme"), "messages": [{**conv("fixme")["messages"][0], "role": "bot"},
                                                          conv("fixme")["messages"][1]]}))
    first = run_ingest(settings, lake=lake, now=NOW)
    assert first["counts"]["quarantined_by_reason"] == {"unknown_role": 1}
    # a data engineer fixes the record in the quarantine file, then replays it
    key = f"quarantine/dt={DAY}/conversations.jsonl"
    [q] = quarantine(lake)
    q["raw"]["messages"][0]["role"] = "customer"
    lake.write_bytes(key, (json.dumps(q) + "\n").encode())
    out = replay_quarantine(lake, DAY, "conversations")
    assert out["replayed"] == 1 and "replay-" in out["written"]
    second = run_ingest(settings, lake=lake, date=DAY, now=NOW)
    assert_accounted(second)
    assert second["counts"]["curated"] == 6 and second["counts"]["quarantined"] == 1, "the original stays bad"
    assert "fixme" in set(read_snapshot(lake)[1]["conversation_id"])
    with pytest.raises(FileNotFoundError, match="no quarantine for twcs on 2026-11-22"):
        replay_quarantine(lake, DAY, "twcs")


def test_todays_partition_is_left_open_by_incremental_runs(settings, lake):
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("c-1")))
    lake.write_bytes("raw/conversations/dt=2026-11-23/a.jsonl", jsonl(conv("c-2", customer="My refund is late")))
    manifest = run_ingest(settings, lake=lake, now=NOW)
    assert manifest["partitions"] == [f"conversations/dt={DAY}"]
    later = run_ingest(settings, lake=lake, now=datetime(2026, 11, 24, 2, tzinfo=UTC))
    assert later["partitions"] == ["conversations/dt=2026-11-23"] and later["totals"]["conversations"] == 2


def test_worker_processes_give_the_same_snapshot_as_one_process(settings, demo_lake, tmp_path):
    """Files are curated in parallel, merged in file order: the outcome cannot depend on the workers."""
    import shutil

    copy = LocalLake(shutil.copytree(demo_lake.root, tmp_path / "copy"))
    one = run_ingest(settings.model_copy(update={"ingest_workers": 1}), lake=demo_lake, now=NOW)
    two = run_ingest(settings.model_copy(update={"ingest_workers": 2}), lake=copy, now=NOW)
    assert two["snapshot_id"] == one["snapshot_id"]
    for key in ("counts", "feedback_counts", "pii_redactions", "sources", "quarantine"):
        assert two[key] == one[key], key
    for key in one["quarantine"]:
        assert copy.read_bytes(key) == demo_lake.read_bytes(key)


class DyingLake(LocalLake):
    """A lake whose reads kill the process that makes them, when that is a worker process."""

    def open(self, key):
        import multiprocessing
        import os

        if multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().open(key)


def test_a_worker_that_dies_fails_the_run_and_changes_nothing(settings, lake):
    for name in ("a", "b"):
        lake.write_bytes(f"raw/conversations/dt={DAY}/{name}.jsonl",
                         jsonl(conv(f"c-{name}", customer=f"Where is parcel {name}?")))
    dying = DyingLake(lake.root)
    with pytest.raises(IngestError, match=r"worker process died .*REPLYLOOP_INGEST_WORKERS=1"):
        run_ingest(settings.model_copy(update={"ingest_workers": 2}), lake=dying, now=NOW)
    assert not lake.exists(CURRENT_KEY) and lake.list("state/") == []
    manifest = run_ingest(settings.model_copy(update={"ingest_workers": 1}), lake=dying, now=NOW)
    assert manifest["counts"]["curated"] == 2


def test_rows_failing_great_expectations_quarantine_their_conversation_only(settings, lake):
    """Chat-template tokens pass the record checks but fail the GX suite. The failing conversation is
    found by its file and line: another conversation in the batch has the same id, and stays."""
    lake.write_bytes(f"raw/conversations/dt={DAY}/a.jsonl", jsonl(conv("same-id", customer="Where is parcel A?")))
    tainted = conv("same-id", customer="Where is parcel B? <|im_end|>")
    tainted["messages"] = [{**m, "message_id": f"b-{i}"} for i, m in enumerate(tainted["messages"])]
    lake.write_bytes(f"raw/conversations/dt={DAY}/b.jsonl", jsonl(tainted, conv("c-ok", customer="Where is C?")))
    manifest = run_ingest(lenient(settings), lake=lake, now=NOW)
    assert_accounted(manifest)
    assert manifest["counts"]["quarantined_by_reason"] == {"validation_failed": 1}
    assert manifest["counts"]["curated"] == 2 and manifest["validation"]["success"] is False
    [line] = quarantine(lake)
    assert line["source"].endswith("/b.jsonl") and line["line"] == 1 and "b.jsonl:1: failed" in line["message"]
    assert "regex_list(text)" in line["message"]
    assert isinstance(line["raw"], list) and len(line["raw"]) == 2, "the rows as they were curated"
    messages = read_snapshot(lake)[1]
    assert sorted(messages["conversation_id"].unique()) == ["c-ok", "same-id"]
    assert "Where is parcel A?" in set(messages["text"])
