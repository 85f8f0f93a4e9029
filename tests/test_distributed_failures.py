"""Bad input of the distributed mode: a missing lake connection, wrong S3 credentials. The task helper
(dags/common/runtime.py) and the package fail with a message that names the service and the setting, and
nothing is written to the lake (no partial snapshot, no quarantine, no ingestion state)."""

from __future__ import annotations

import json
import os
from datetime import date

import boto3
import pytest

pytestmark = pytest.mark.distributed


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """Nothing boto3 could find: no keys in the environment, no config files, no instance role lookup."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AIRFLOW_CONN_REPLYLOOP_LAKE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    yield
    # settings_for exports the connection's keys into the (task) process: take them back out
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[k]
    os.environ.update(saved)


def _keys(client, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_an_s3_lake_without_connection_or_credentials_names_the_connection(settings, no_aws_credentials):
    from common.runtime import MissingLakeCredentials, settings_for

    with pytest.raises(MissingLakeCredentials, match=r"the lake s3://landing/lake is on S3, but no S3 credentials "
                                                     r"were found: define the Airflow connection 'replyloop_lake'.*"
                                                     r"AIRFLOW_CONN_REPLYLOOP_LAKE.*AWS_ACCESS_KEY_ID"):
        settings_for({"lake_uri": "s3://landing/lake"})


@pytest.fixture
def s3_with_iam(tmp_path):
    """A moto S3 server that enforces IAM once a landing day, an admin and a principal without permissions
    exist; yields (endpoint, admin client, the principal's keys)."""
    from conftest import _moto_server

    from replyloop.demo_data import generate_landing
    from replyloop.lake import LocalLake

    staged = LocalLake(tmp_path / "staged")
    generate_landing(staged.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=10)
    files = [o.key for o in staged.list("")]
    proc, url = _moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": str(1 + len(files) + 5)})
    try:
        root = dict(endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                    region_name="us-east-1")
        s3, iam = boto3.client("s3", **root), boto3.client("iam", **root)
        s3.create_bucket(Bucket="locked")
        for key in files:
            s3.put_object(Bucket="locked", Key=f"lake/{key}", Body=staged.read_bytes(key))
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        admin = iam.create_access_key(UserName="admin")["AccessKey"]
        iam.create_user(UserName="nobody")
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
        admin_s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=admin["AccessKeyId"],
                                aws_secret_access_key=admin["SecretAccessKey"], region_name="us-east-1")
        yield url, admin_s3, nobody
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_wrong_s3_credentials_in_the_connection_leave_the_lake_as_it_was(settings, s3_with_iam, no_aws_credentials,
                                                                         monkeypatch):
    """The connection holds keys of a principal without S3 permissions: ingestion stops saying access denied
    and where, and writes nothing (no snapshot, no quarantine, no ingestion state)."""
    from common.runtime import settings_for

    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import LakeError

    url, admin, nobody = s3_with_iam
    before = _keys(admin, "locked")
    assert before and all(k.startswith("lake/raw/") for k in before)
    monkeypatch.setenv("AIRFLOW_CONN_REPLYLOOP_LAKE", json.dumps({
        "conn_type": "aws", "login": nobody["AccessKeyId"], "password": nobody["SecretAccessKey"],
        "extra": {"endpoint_url": url, "region_name": "us-east-1"}}))

    task_settings = settings_for({"lake_uri": "s3://locked/lake"})
    with pytest.raises(LakeError, match=r"cannot access s3://locked/lake/.*access denied: check the credentials"):
        run_ingest(task_settings)
    assert _keys(admin, "locked") == before
