"""The lake on a local folder and on S3 (boto3 against moto's server over real HTTP on loopback)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import boto3
import pytest

from replyloop.ingest.pipeline import IngestError, run_ingest
from replyloop.lake import LakeError, LocalLake, S3Lake, open_lake


@pytest.fixture
def bucket(s3_env):
    name = f"lake-{datetime.now(UTC):%H%M%S%f}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def roundtrip(lake):
    lake.write_bytes("raw/a/dt=2026-11-20/x.jsonl", b"hello\n")
    lake.write_bytes("raw/a/dt=2026-11-21/y.jsonl", b"world\n")
    assert [o.key for o in lake.list("raw/a/")] == ["raw/a/dt=2026-11-20/x.jsonl", "raw/a/dt=2026-11-21/y.jsonl"]
    assert lake.read_bytes("raw/a/dt=2026-11-20/x.jsonl") == b"hello\n"
    with lake.open("raw/a/dt=2026-11-21/y.jsonl") as fh:
        assert fh.read() == b"world\n"
    assert lake.exists("raw/a/dt=2026-11-20/x.jsonl") and not lake.exists("raw/a/nope")
    with lake.open_random("raw/a/dt=2026-11-21/y.jsonl") as fh:  # ranged reads, as Parquet does them
        fh.seek(-3, io.SEEK_END)
        assert fh.read() == b"ld\n" and fh.tell() == 6
        fh.seek(1)
        assert fh.read(3) == b"orl"
    with pytest.raises(LakeError, match="cannot .*nope"):
        lake.open_random("raw/a/nope")
    lake.delete("raw/a/dt=2026-11-20/x.jsonl")
    assert [o.key for o in lake.list("raw/")] == ["raw/a/dt=2026-11-21/y.jsonl"]
    assert lake.list("nothing/") == []


def test_local_lake(tmp_path):
    lake = open_lake(str(tmp_path))
    assert isinstance(lake, LocalLake)
    roundtrip(lake)
    with pytest.raises(LakeError, match="escapes the lake root"):
        lake.read_bytes("../../etc/passwd")
    with pytest.raises(LakeError, match="cannot read .*missing.jsonl"):
        lake.read_bytes("missing.jsonl")


def test_s3_lake(bucket):
    lake = open_lake(f"s3://{bucket}/some/prefix")
    assert isinstance(lake, S3Lake)
    roundtrip(lake)
    raw = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert {o["Key"] for o in raw} == {"some/prefix/raw/a/dt=2026-11-21/y.jsonl"}


def test_ingest_from_s3(settings, bucket, tmp_path):
    """Worker processes re-open the S3 lake from its URI (credentials from the environment); the
    snapshot is the one a single process makes of the same files in a local folder."""
    from datetime import date

    from replyloop.demo_data import generate_landing

    lake = open_lake(f"s3://{bucket}/landing")
    generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=40)
    local = LocalLake(tmp_path / "local")
    generate_landing(local.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=40)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    manifest = run_ingest(settings.model_copy(update={"ingest_workers": 2}), lake=lake, now=now)
    c = manifest["counts"]
    assert c["raw"] == c["curated"] + c["quarantined"] + c["duplicates"] and c["curated"] > 30
    assert lake.exists(f"curated/conversations/{manifest['snapshot_id']}/parts/conversations/dt=2026-11-20.parquet")
    assert json.loads(lake.read_bytes(f"curated/conversations/{manifest['snapshot_id']}/manifest.json"))["lake"] \
        == f"s3://{bucket}/landing"
    single = run_ingest(settings.model_copy(update={"ingest_workers": 1}), lake=local, now=now)
    assert single["snapshot_id"] == manifest["snapshot_id"] and single["counts"] == manifest["counts"]


def test_s3_lake_travels_to_worker_processes_only_when_it_can_be_reopened(s3_env):
    import pickle

    lake = pickle.loads(pickle.dumps(open_lake("s3://some-bucket/prefix")))
    assert isinstance(lake, S3Lake) and lake.uri == "s3://some-bucket/prefix" and lake.endpoint_url == s3_env
    bound = open_lake("s3://some-bucket/prefix", client=boto3.client("s3"))
    assert not bound.portable
    with pytest.raises(TypeError, match="built around a client object"):
        pickle.dumps(bound)


def test_missing_bucket_is_a_clear_error(settings, s3_env):
    lake = open_lake("s3://no-such-bucket-here/prefix")
    with pytest.raises(LakeError, match=r"cannot access s3://no-such-bucket-here/prefix/.*: the bucket does not exist \(NoSuchBucket\)"):
        run_ingest(settings, lake=lake)


def test_missing_prefix_on_a_requested_day(settings, bucket):
    lake = open_lake(f"s3://{bucket}/empty")
    with pytest.raises(IngestError, match=f"no landing data for dt=2026-11-20: nothing under s3://{bucket}/empty/raw"):
        run_ingest(settings, lake=lake, date="2026-11-20")


def test_access_denied_is_a_clear_error(settings, s3_auth_endpoint, monkeypatch):
    """A principal without S3 permissions: the run stops saying access denied and where."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    root = dict(endpoint_url=s3_auth_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    boto3.client("s3", **root).create_bucket(Bucket="locked")
    iam = boto3.client("iam", **root)
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    client = boto3.client("s3", endpoint_url=s3_auth_endpoint, aws_access_key_id=key["AccessKeyId"],
                          aws_secret_access_key=key["SecretAccessKey"])
    lake = open_lake("s3://locked/landing", client=client)
    with pytest.raises(LakeError, match=r"cannot access s3://locked/landing/.*: access denied: check the "
                                        r"credentials and the bucket policy \(AccessDenied\)"):
        run_ingest(settings, lake=lake)


def test_unsupported_scheme():
    with pytest.raises(LakeError, match="unsupported lake URI 'gs://b/p'"):
        open_lake("gs://b/p")
