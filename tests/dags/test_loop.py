"""The whole nightly loop through Airflow's dag.test(), on a tiny randomly initialised Llama: a trained
candidate is promoted on a cold start, a degraded one is refused and champion stays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from replyloop import registry

from evaluation.test_gate_loop import register_variant  # tests/ is on sys.path (rootdir of the test packages)

DAGS = Path(__file__).resolve().parents[2] / "dags"
EVAL_DATA = Path(__file__).resolve().parents[1] / "evaluation" / "data"
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


@pytest.fixture
def learner_settings(home, tiny_learner_dir, monkeypatch):
    """The tiny BPE learner as base model: 100 LoRA steps make it certainly better than its random self."""
    import torch

    from replyloop.settings import get_settings

    for key, value in {"BASE_MODEL": str(tiny_learner_dir), "MAX_NEW_TOKENS": "12", "EVAL_FRACTION": "0.3",
                       "MIN_NEW_CONVERSATIONS": "5"}.items():
        monkeypatch.setenv(f"REPLYLOOP_{key}", value)
    get_settings.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is several times faster
    yield get_settings()
    torch.set_num_threads(threads)


def test_nightly_loop_with_dag_test(airflow_db, dags, learner_settings, demo_lake, monkeypatch, tmp_path):
    from replyloop.settings import get_settings

    settings = learner_settings
    ingest = dags["ingest_conversations"].test()
    assert _states(ingest) == {"ingest": "success", "cleanup": "success"}, _states(ingest)
    assert demo_lake.exists("curated/conversations/CURRENT")

    finetune = dags["finetune_lora"].test(run_conf={"max_steps": 100, "learning_rate": 0.005})
    assert _states(finetune) == {"enough_new_data": "success", "train": "success"}, _states(finetune)
    [version] = [v["version"] for v in registry.status(settings)["versions"]]
    mv = registry.client(settings).get_model_version(settings.model_name, version)
    run = registry.client(settings).get_run(mv.run_id)
    assert run.data.params["max_steps"] == "100"

    # cold start: the trained candidate against the base model, on the test-sized sets and gate file
    for key, value in {"EVAL_SETS_URI": str(EVAL_DATA / "eval"), "GATE_FILE": str(EVAL_DATA / "gate_wiring.yaml"),
                       "HELDOUT_CAP": "24", "GATE_LATENCY_PROMPTS": "5"}.items():
        monkeypatch.setenv(f"REPLYLOOP_{key}", value)
    get_settings.cache_clear()
    evaluate = dags["evaluate_and_promote"].test()
    assert _states(evaluate) == {"evaluate": "success", "route": "success", "promote": "success",
                                 "approval": "skipped", "promote_approved": "skipped",
                                 "record_approval": "success"}, _states(evaluate)
    assert registry.version_tags(settings, version)[registry.Tag.GATE] == "passed"
    assert registry.alias_version(settings, "champion") == version

    # A degraded candidate (the champion's adapter with random LoRA B weights), named by the run's Param:
    # the evaluate task succeeds (it decided), the gate fails, nothing is routed and champion stays.
    bad = register_variant(settings, version, tmp_path, corrupt=True)
    rejected = dags["evaluate_and_promote"].test(run_conf={"version": bad})
    assert _states(rejected) == {"evaluate": "success", "route": "success", "promote": "skipped",
                                 "approval": "skipped", "promote_approved": "skipped",
                                 "record_approval": "success"}, _states(rejected)
    tags = registry.version_tags(settings, bad)
    assert tags[registry.Tag.GATE] == "failed" and registry.Tag.APPROVAL not in tags, "nobody was asked"
    assert registry.alias_version(settings, "champion") == version

    # Nothing new landed: the next night skips ingestion and training instead of retraining.
    again = dags["ingest_conversations"].test()
    assert _states(again) == {"ingest": "skipped", "cleanup": "success"}
    skip = dags["finetune_lora"].test()
    assert _states(skip) == {"enough_new_data": "success", "train": "skipped"}


def test_evaluate_dag_waits_for_approval_when_asked(dags):
    """The approval step is Airflow's HITL ApprovalOperator; a reject or a timeout (default Reject) leaves
    champion alone because only promote_approved moves it."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = dags["evaluate_and_promote"]
    approval = dag.get_task("approval")
    assert isinstance(approval, ApprovalOperator) and approval.defaults == ["Reject"]
    assert approval.response_timeout.total_seconds() == 24 * 3600
    assert approval.downstream_task_ids == {"promote_approved"}
    assert dag.get_task("promote_approved").downstream_task_ids == {"record_approval"}
    assert dag.get_task("record_approval").trigger_rule == "all_done"
    assert dag.get_task("route").downstream_task_ids == {"approval", "promote"}


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
