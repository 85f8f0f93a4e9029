"""Every DAG file parses, follows the conventions and stays cheap to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py"))
APPROVED_TAGS = {"replyloop", "ingest", "data-quality", "training", "evaluation", "registry", "monitoring"}
EXPECTED = {"ingest_conversations", "finetune_lora", "evaluate_and_promote"}
HEAVY = ("torch", "transformers", "peft", "mlflow", "great_expectations", "evaluate", "datasets", "pandas")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_expected_dags(dagbag):
    assert EXPECTED <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_conventions(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and set(dag.tags) <= APPROVED_TAGS, f"{dag_id} tags {dag.tags} not in {APPROVED_TAGS}"
    assert dag.default_args.get("retries", 0) >= 2, f"{dag_id} must have retries >= 2"
    assert dag.doc_md and len(dag.doc_md.strip()) > 100, f"{dag_id} needs a doc_md that says what it does"
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"
    assert dag.params, f"{dag_id} exposes no Params for manual triggers"


def test_asset_wiring(dagbag):
    from airflow.sdk.definitions.asset import AssetAny

    from common.assets import CANDIDATE_MODEL, CHAMPION_MODEL, CURATED_SNAPSHOT, RETRAIN_REQUEST

    ingest = dagbag.dags["ingest_conversations"]
    finetune = dagbag.dags["finetune_lora"]
    evaluate = dagbag.dags["evaluate_and_promote"]
    assert CURATED_SNAPSHOT in ingest.get_task("ingest").outlets
    assert CANDIDATE_MODEL in finetune.get_task("train").outlets
    assert CHAMPION_MODEL in evaluate.get_task("promote").outlets
    # a new snapshot or a retrain request from monitoring, either one
    assert _scheduled_on(finetune) == {CURATED_SNAPSHOT.uri, RETRAIN_REQUEST.uri}
    assert isinstance(finetune.timetable.asset_condition, AssetAny)
    assert RETRAIN_REQUEST in dagbag.dags["monitor_feedback"].get_task("request_retraining").outlets
    assert _scheduled_on(evaluate) == {CANDIDATE_MODEL.uri}
    assert ingest.timetable.expression == "0 2 * * *"


def _scheduled_on(dag) -> set[str]:
    return {asset.uri for asset in dag.timetable.asset_condition.objects}


def test_training_runs_on_gpu_queue(dagbag):
    train = dagbag.dags["finetune_lora"].get_task("train")
    assert train.queue == "gpu"
    assert train.pool == "gpu"


def test_evaluation_runs_on_the_configured_queue(dagbag, monkeypatch):
    """The infra check times the candidate where `evaluate` runs: REPLYLOOP_EVAL_QUEUE puts it on the serving
    workers' queue; unset, the task keeps Airflow's default queue."""
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    from replyloop.settings import get_settings

    assert dagbag.dags["evaluate_and_promote"].get_task("evaluate").queue == conf.get("operators", "default_queue")
    monkeypatch.setenv("REPLYLOOP_EVAL_QUEUE", "serving")
    get_settings.cache_clear()
    try:
        bag = DagBag(dag_folder=str(DAGS / "evaluate_and_promote.py"))
        assert bag.dags["evaluate_and_promote"].get_task("evaluate").queue == "serving"
    finally:
        monkeypatch.delenv("REPLYLOOP_EVAL_QUEUE")
        get_settings.cache_clear()


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_without_heavy_modules(path):
    """Import the DAG file in a fresh interpreter (after Airflow itself) and look at what came with it."""
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(DAGS)!r})\n"
        "import airflow.sdk, pendulum\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(path)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "elapsed = time.perf_counter() - t\n"
        f"heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r})\n"
        "print(elapsed); print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    elapsed, heavy = out.stdout.strip().splitlines()[-2:] if out.stdout.strip().count("\n") else (out.stdout.strip(), "")
    assert heavy.strip() == "", f"{path.name} imports heavy modules at parse time: {heavy}"
    assert float(elapsed) < 1.0, f"{path.name} took {float(elapsed):.2f}s to import"
