"""Issue 10, done-when: land data for a user -> ingest -> train -> erase -> ingest. The user's text is in no
current snapshot file, the lineage report names the version, a quarantine replay cannot bring it back, and
after a purge no file of the lake holds it."""

from __future__ import annotations

import gzip
import json
from datetime import date

import pyarrow.parquet as pq
import pytest

from replyloop import registry
from replyloop.contract import CURATED_PREFIX
from replyloop.demo_data import generate_landing
from replyloop.ingest.pipeline import run_ingest
from replyloop.ingest.replay import replay_quarantine
from replyloop.ingest.snapshot import Snapshot
from replyloop.lake import lake_for
from replyloop.privacy.erasure import ErasureError
from replyloop.privacy.purge import purge
from replyloop.privacy.request import erase_subjects
from replyloop.training.config import load_train_config
from replyloop.training.train import train

DAY = "2026-11-20"
SECRET = "Marmaduke"  # the subject's cat: a word that appears nowhere else


def subject_records() -> bytes:
    lines = []
    for k, text in enumerate([f"My cat {SECRET} knocked the speaker off, it no longer charges",
                              f"{SECRET} also chewed the cable of the new one, can I get a spare?"]):
        cid = f"subj-{k}"
        lines.append(json.dumps({
            "conversation_id": cid, "platform": "twitter", "channel": "direct_message", "created_at": f"{DAY}T09:00:00Z",
            "messages": [{"message_id": f"{cid}-1", "role": "customer", "author_id": "u-subject", "text": text,
                          "created_at": f"{DAY}T09:00:00Z"},
                         {"message_id": f"{cid}-2", "role": "agent", "author_id": "AcmeSupport",
                          "text": f"Oh no, poor {SECRET}! We'll send a replacement today.",
                          "created_at": f"{DAY}T09:10:00Z"}]}))
    # a record that is quarantined (bad role) and so sits in the quarantine with its raw text
    lines.append(json.dumps({"conversation_id": "subj-9", "created_at": f"{DAY}T09:00:00Z", "messages": [
        {"message_id": "subj-9-1", "role": "cat", "author_id": "u-subject", "text": f"{SECRET} says hi"}]}))
    return ("\n".join(lines) + "\n").encode()


def files_holding(lake, needle: bytes) -> list[str]:
    found = []
    for obj in lake.list(""):
        data = lake.read_bytes(obj.key)
        if obj.key.endswith(".gz"):
            data = gzip.decompress(data)
        if obj.key.endswith(".parquet"):
            table = pq.read_table(lake.url(obj.key))
            data = "\n".join(str(v) for name in table.column_names for v in table[name].to_pylist()).encode()
        if needle in data:
            found.append(obj.key)
    return found


def test_erase_a_user_end_to_end(tiny_settings):
    settings = tiny_settings
    lake = lake_for(settings)
    generate_landing(lake.write_bytes, start_date=date.fromisoformat(DAY), days=1, conversations_per_day=30)
    lake.write_bytes(f"raw/conversations/dt={DAY}/subject.jsonl", subject_records())
    first = run_ingest(settings, lake=lake)
    assert files_holding(lake, SECRET.encode())  # curated, landed and quarantined
    trained = train(load_train_config(max_steps=2, batch_size=2, max_eval_examples=2), settings)
    version = trained["version"]
    registry.client(settings).set_registered_model_alias(settings.model_name, registry.CHAMPION, version)

    out = erase_subjects(settings, authors=["u-subject"], requested_by="dpo@acme", reason="GDPR art. 17", lake=lake)
    assert out["request"]["matched"]["author:u-subject"] == {"conversations": 2, "messages": 2}
    assert [(r["version"], r["alias"], r["conversations"]) for r in out["request"]["lineage"]] == [
        (version, "champion", 2)]
    assert not current_holds(lake, SECRET)

    # the hand-fixed quarantine is replayed and the day re-ingested: the subject stays out
    replayed = replay_quarantine(lake, DAY, "conversations")
    assert replayed["replayed"] >= 1
    assert files_holding(lake, SECRET.encode())  # the replayed landing file holds it ...
    run_ingest(settings, lake=lake, date=DAY)
    assert not current_holds(lake, SECRET)  # ... but ingestion keeps it out

    with pytest.raises(ErasureError, match=rf"champion, version {version} of {settings.model_name}"):
        purge(settings, lake=lake)
    assert first["snapshot_id"] in {o.key.split("/")[2] for o in lake.list(f"{CURATED_PREFIX}/")}  # nothing purged
    result = purge(settings, force=True, lake=lake)
    assert first["snapshot_id"] in result["deleted_snapshots"]
    assert files_holding(lake, SECRET.encode()) == []
    assert files_holding(lake, b"u-subject") == [o.key for o in lake.list("privacy/erasures/")]  # ids, in the log only



def current_holds(lake, needle: str) -> bool:
    """Whether any file the current snapshot uses (messages or feedback) holds the text."""
    messages, feedback = Snapshot.current(lake).tables()
    return any(needle in str(v) for table in (messages, feedback) for name in table.column_names
               for v in table[name].to_pylist())
