"""Bad input of the distributed mode: a missing lake connection, wrong S3 credentials, an unreachable MLflow
server. The task helper (dags/common/runtime.py) and the package fail with a message that names the service
and the setting, and nothing is left behind (no partial snapshot, quarantine or ingestion state in the lake;
no MLflow run or model version)."""

from __future__ import annotations

import json
import os
import sys
from datetime import date

import boto3
import httpx
import pytest
from airflow_cluster import Processes, free_port, wait_until

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


UNREACHABLE = (r"the MLflow tracking server http://127\.0\.0\.1:{port} is unreachable \(setting MLFLOW_TRACKING_URI, "
               r"also read as REPLYLOOP_MLFLOW_TRACKING_URI\): no answer after 1 retries "
               r"\(MLFLOW_HTTP_REQUEST_MAX_RETRIES\) with a 5 s timeout \(MLFLOW_HTTP_REQUEST_TIMEOUT\)")


@pytest.fixture
def ingested(tiny_settings):
    """A lake with one curated snapshot (ingestion needs no MLflow), and its keys."""
    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake

    lake = open_lake(tiny_settings.lake)
    generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=30)
    run_ingest(tiny_settings)
    return tiny_settings, lake


def test_an_unreachable_mlflow_server_stops_each_task_naming_it_and_a_retry_registers_once(ingested, tmp_path,
                                                                                          monkeypatch):
    """MLFLOW_TRACKING_URI names a loopback port nobody listens on: readiness, training and evaluation stop
    with a message naming the server and the settings (MLflow's retries set low, so it is prompt) and write
    nothing; once a server listens there, a retry of the same Airflow run trains and registers one version."""
    from mlflow import MlflowClient

    from replyloop import registry
    from replyloop.evaluation.run import evaluate_candidate
    from replyloop.settings import get_settings
    from replyloop.tracking import TrackingUnavailable
    from replyloop.training.config import load_train_config
    from replyloop.training.readiness import new_data_since_last_training
    from replyloop.training.train import train

    settings, lake = ingested
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # restored after the test (configure exports it)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    get_settings.cache_clear()
    down = get_settings()
    cfg = load_train_config(max_steps=2, batch_size=2, max_seq_len=96, eval_every=2, checkpoint_every=2,
                            max_eval_examples=2, warmup_steps=1, lora_r=4)
    lake_before = sorted(o.key for o in lake.list(""))

    message = UNREACHABLE.format(port=port)
    with pytest.raises(TrackingUnavailable, match=message):
        new_data_since_last_training(down)
    with pytest.raises(TrackingUnavailable, match=message):
        train(cfg, down, airflow_run_id="scheduled__down")
    with pytest.raises(TrackingUnavailable, match=message):
        evaluate_candidate(down)
    assert sorted(o.key for o in lake.list("")) == lake_before

    procs = Processes(tmp_path / "logs")
    try:
        procs.start("mlflow", [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                               "--artifacts-destination", str(tmp_path / "mlartifacts")], env=dict(os.environ))
        wait_until(lambda: httpx.get(f"{uri}/health", timeout=2).status_code == 200, timeout=120,
                   what="mlflow server on loopback", procs=procs)
        first = train(cfg, down, airflow_run_id="scheduled__down")
        again = train(cfg, down, airflow_run_id="scheduled__down")
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name(settings.experiment).experiment_id])
        assert [str(v.version) for v in registry.versions(down)] == [first["version"]] == [again["version"]]
        assert again["already_registered"] and [r.info.run_id for r in runs] == [first["run_id"]]
    finally:
        procs.stop_all()
