"""The whole nightly loop through Airflow's dag.test(), on a tiny randomly initialised Llama."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from replyloop import registry

DAGS = Path(__file__).resolve().parents[2] / "dags"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata database in the session's AIRFLOW_HOME, with the gpu pool."""
    airflow = [sys.executable, "-m", "airflow"]
    for cmd in (["db", "migrate"], ["pools", "set", "gpu", "1", "LoRA training slots"]):
        out = subprocess.run(airflow + cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
        assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_nightly_loop_with_dag_test(airflow_db, dags, tiny_settings, demo_lake):
    settings = tiny_settings
    ingest = dags["ingest_conversations"].test()
    assert _states(ingest) == {"ingest": "success", "cleanup": "success"}, _states(ingest)
    assert demo_lake.exists("curated/conversations/CURRENT")

    finetune = dags["finetune_lora"].test(run_conf={"max_steps": 4, "lora_r": 4})
    assert _states(finetune) == {"enough_new_data": "success", "train": "success"}, _states(finetune)
    [version] = [v["version"] for v in registry.status(settings)["versions"]]
    mv = registry.client(settings).get_model_version(settings.model_name, version)
    run = registry.client(settings).get_run(mv.run_id)
    assert run.data.params["max_steps"] == "4" and run.data.params["lora_r"] == "4"

    evaluate = dags["evaluate_and_promote"].test(run_conf={"max_prompts": 4})
    states = _states(evaluate)
    assert states["evaluate"] == "success"
    mv = registry.client(settings).get_model_version(settings.model_name, version)
    if mv.tags[registry.GATE_TAG] == "passed":
        assert states["promote"] == "success"
        assert registry.alias_version(settings, "champion") == version
    else:
        assert states["promote"] == "skipped"
        assert registry.alias_version(settings, "champion") is None

    # Nothing new landed: the next night skips ingestion and training instead of retraining.
    again = dags["ingest_conversations"].test()
    assert _states(again) == {"ingest": "skipped", "cleanup": "success"}
    skip = dags["finetune_lora"].test()
    assert _states(skip) == {"enough_new_data": "success", "train": "skipped"}


def test_bad_params_are_refused(airflow_db, dags, tiny_settings):
    with pytest.raises(Exception, match="max_steps|-3|minimum"):
        dags["finetune_lora"].test(run_conf={"max_steps": -3})


def test_ingest_dag_reads_an_s3_lake_through_the_airflow_connection(airflow_db, dags, settings, s3_endpoint,
                                                                     monkeypatch):
    """Only the Airflow connection `replyloop_lake` says where the S3 endpoint is and which keys to use."""
    import json
    from datetime import date

    import boto3

    from replyloop.demo_data import generate_landing
    from replyloop.lake import open_lake

    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    admin = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="k", aws_secret_access_key="s")
    admin.create_bucket(Bucket="conn-lake")
    lake = open_lake("s3://conn-lake/landing", client=admin)
    generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=30)
    monkeypatch.setenv("AIRFLOW_CONN_REPLYLOOP_LAKE", json.dumps({
        "conn_type": "aws", "login": "k", "password": "s",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))
    run = dags["ingest_conversations"].test(run_conf={"lake_uri": "s3://conn-lake/landing"})
    assert _states(run) == {"ingest": "success", "cleanup": "success"}
    assert lake.exists("curated/conversations/CURRENT")
