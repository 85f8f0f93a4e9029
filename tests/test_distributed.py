"""The distributed mode, run for real on this machine's services, as docker/docker-compose.yaml wires it:

- Airflow with the CeleryExecutor: metadata in a PostgreSQL database of its own, Redis as the broker,
  api-server, scheduler, dag-processor, one Celery worker on the default queue and one on queue `gpu` only,
  each started as a process by the test;
- an MLflow tracking server whose backend store is another PostgreSQL database and whose artifacts are
  proxied to S3; the lake on S3 too (moto's S3 server on loopback stands in for MinIO);
- the nightly loop triggered through Airflow's REST API on the tiny model: ingest -> (Asset) finetune_lora
  on the gpu worker -> (Asset) evaluate_and_promote.

PostgreSQL (127.0.0.1:5432, trust auth, user postgres) and Redis (127.0.0.1:6379) are this machine's
services. Where one is absent the test skips saying which, except under CI (`CI` set), where it fails.
Everything the test starts is stopped (process groups), also when it fails.
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from datetime import date
from pathlib import Path

import boto3
import pytest

from airflow_cluster import AIRFLOW, AirflowApi, Processes, airflow_env, clean_env, free_port, wait_until

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

EVAL_DATA = Path(__file__).resolve().parent / "data" / "distributed_eval"
TRAIN_TASK = ("finetune_lora", "train")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
DAG_IDS = ("ingest_conversations", "finetune_lora", "evaluate_and_promote")
WORKERS = {"default": "replyloop-worker-default", "gpu": "replyloop-worker-gpu"}
# A training budget that learns the landing data's replies (the gate compares with the untrained base).
TRAIN_YAML = """\
max_steps: 12
batch_size: 2
grad_accum: 1
learning_rate: 0.003
warmup_steps: 2
max_seq_len: 96
eval_every: 12
max_eval_examples: 4
seed: 17
lora: {r: 8, alpha: 16, dropout: 0.0,
       target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
"""


def _absent(message: str):
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def postgres_admin():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        _absent(f"PostgreSQL is not reachable on {PG['host']}:{PG['port']} as {PG['user']}: {exc}".strip())
    admin.autocommit = True
    created = []

    def create(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        # the psycopg2 driver named explicitly: SQLAlchemy 2.1 takes psycopg 3 for a bare postgresql://
        return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"

    yield create
    with admin.cursor() as cur:
        for name in created:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def redis_url():
    redis = pytest.importorskip("redis")
    db = 1 + secrets.randbelow(15)  # a database index of its own on the shared server
    client = redis.Redis(*REDIS, db=db, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _absent(f"Redis is not reachable on {REDIS[0]}:{REDIS[1]}: {exc}")
    yield f"redis://{REDIS[0]}:{REDIS[1]}/{db}"
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def stack(postgres_admin, redis_url, s3_endpoint, tiny_model_dir, tmp_path_factory):
    """MLflow server + Airflow on Celery, all as processes; yields what the test needs to look at."""
    tmp = tmp_path_factory.mktemp("distributed")
    s3_keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in s3_keys.items()
                                                          if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
    lake_bucket, mlflow_bucket = f"lake-{uuid.uuid4().hex[:8]}", f"mlflow-{uuid.uuid4().hex[:8]}"
    for bucket in (lake_bucket, mlflow_bucket):
        s3.create_bucket(Bucket=bucket)
    airflow_db, mlflow_db = postgres_admin("replyloop_airflow"), postgres_admin("replyloop_mlflow")
    api_port, mlflow_port = free_port(), free_port()
    (tmp / "train.yaml").write_text(TRAIN_YAML)

    base = {**clean_env(), **s3_keys}
    procs = Processes(tmp / "logs")
    try:
        procs.start("mlflow", [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                               "--port", str(mlflow_port), "--workers", "1", "--backend-store-uri", mlflow_db,
                               "--artifacts-destination", f"s3://{mlflow_bucket}/mlartifacts"],
                    {**base, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint})
        env = {
            **airflow_env(base, tmp, api_port=api_port, executor="CeleryExecutor"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__CELERY__BROKER_URL": redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_cluster.worker_hostname",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            "AWS_ENDPOINT_URL": s3_endpoint,
            "REPLYLOOP_HOME": str(tmp / "home"),
            "REPLYLOOP_LAKE_URI": f"s3://{lake_bucket}/lake",
            "REPLYLOOP_BASE_MODEL": str(tiny_model_dir),
            "REPLYLOOP_TRAIN_CONFIG": str(tmp / "train.yaml"),
            "REPLYLOOP_MIN_NEW_CONVERSATIONS": "5",
            "REPLYLOOP_MAX_NEW_TOKENS": "6",
            # the gate's rules and sets for this test: a few prompts, an outcome that does not hang on the
            # judgement of a tiny random model (tests/evaluation test the gate itself)
            "REPLYLOOP_GATE_FILE": str(EVAL_DATA / "gate.yaml"),
            "REPLYLOOP_EVAL_SETS_URI": str(EVAL_DATA),
            "REPLYLOOP_HELDOUT_CAP": "8",
            "REPLYLOOP_GATE_LATENCY_PROMPTS": "2",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "GX_ANALYTICS_ENABLED": "False",
            "TQDM_DISABLE": "1",
        }
        for args in (["db", "migrate"], ["pools", "set", "gpu", "1", "LoRA training slots"]):
            init = procs.start("init", [AIRFLOW, *args], env)
            assert init.wait(timeout=240) == 0, f"airflow {' '.join(args)}:\n{procs.log_tail('init')}"
            procs.procs.pop("init")
        procs.start("api-server", [AIRFLOW, "api-server", "--port", str(api_port)], env)
        procs.start("scheduler", [AIRFLOW, "scheduler"], env)
        procs.start("dag-processor", [AIRFLOW, "dag-processor"], env)
        for queue, hostname in WORKERS.items():
            procs.start(f"worker-{queue}", [AIRFLOW, "celery", "worker", "--queues", queue, "--concurrency", "1",
                                            "--celery-hostname", f"{queue}@{hostname}", "--skip-serve-logs",
                                            "--pid", str(tmp / f"worker-{queue}.pid")],
                        {**env, "REPLYLOOP_WORKER_HOSTNAME": hostname})
        api = AirflowApi(f"http://127.0.0.1:{api_port}")
        wait_until(api.ready, timeout=120, what="the Airflow api-server to answer", procs=procs)
        wait_until(lambda: set(DAG_IDS) <= api.dag_ids(), timeout=120, what="the DAGs to be parsed", procs=procs)
        yield {"api": api, "procs": procs, "env": env, "s3": s3, "lake_bucket": lake_bucket, "mlflow_bucket": mlflow_bucket,
               "mlflow_uri": env["MLFLOW_TRACKING_URI"], "mlflow_db": mlflow_db}
        api.close()
    finally:
        procs.stop_all()


def _finished_runs(api: AirflowApi, dag_id: str, count: int, procs: Processes, timeout: float) -> list[dict]:
    """Wait until `dag_id` has `count` finished runs (asset-triggered runs are created by the scheduler)."""
    def done():
        runs = api.runs(dag_id)
        return runs if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs) else None
    return wait_until(done, timeout=timeout, what=f"{count} finished run(s) of {dag_id}", procs=procs)


def _explain(api: AirflowApi, dag_id: str, run: dict) -> str:
    lines = [f"{dag_id} {run['dag_run_id']}: {run['state']}"]
    for ti in api.task_instances(dag_id, run["dag_run_id"]):
        lines.append(f"  {ti['task_id']}: {ti['state']} on {ti['hostname']} (queue {ti['queue']})")
        if ti["state"] == "failed":
            lines.append(api.task_log(dag_id, run["dag_run_id"], ti["task_id"], ti["try_number"] or 1)[-3000:])
    return "\n".join(lines)


def test_nightly_loop_on_celery_with_a_gpu_queue_mlflow_server_and_s3(stack):
    from mlflow import MlflowClient

    from replyloop.demo_data import generate_landing
    from replyloop.lake import open_lake

    api, procs, s3 = stack["api"], stack["procs"], stack["s3"]
    for dag_id in DAG_IDS:  # paused at creation, as in any new deployment: the operator switches them on
        api.unpause(dag_id)
    # On unpausing, the nightly schedule runs once at once: no exports have landed, so ingestion skips.
    [empty_night] = _finished_runs(api, "ingest_conversations", 1, procs, timeout=90)
    assert empty_night["state"] == "success", _explain(api, "ingest_conversations", empty_night)
    states = {ti["task_id"]: ti["state"] for ti in api.task_instances("ingest_conversations", empty_night["dag_run_id"])}
    assert states["ingest"] == "skipped", states

    lake = open_lake(f"s3://{stack['lake_bucket']}/lake", client=s3)
    generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=80)
    run_id = api.trigger("ingest_conversations")
    state = api.wait_finished("ingest_conversations", run_id, timeout=120, procs=procs)
    ingest_run = {"dag_run_id": run_id, "state": state}
    assert state == "success", _explain(api, "ingest_conversations", ingest_run)

    [finetune] = _finished_runs(api, "finetune_lora", 1, procs, timeout=180)
    assert finetune["state"] == "success", _explain(api, "finetune_lora", finetune)
    [evaluate] = _finished_runs(api, "evaluate_and_promote", 1, procs, timeout=240)
    assert evaluate["state"] == "success", _explain(api, "evaluate_and_promote", evaluate)
    assert finetune["run_type"] == evaluate["run_type"] == "asset_triggered"

    # Training ran on the gpu worker, on queue gpu, in pool gpu; every other task on the default worker.
    placed = {}
    for dag_id, run in (("ingest_conversations", ingest_run), ("finetune_lora", finetune),
                        ("evaluate_and_promote", evaluate)):
        for ti in api.task_instances(dag_id, run["dag_run_id"]):
            placed[(dag_id, ti["task_id"])] = (ti["state"], ti["queue"], ti["hostname"], ti["pool"])
    assert placed.pop(TRAIN_TASK) == ("success", "gpu", WORKERS["gpu"], "gpu")
    ran = {task for task, (state, *_) in placed.items() if state != "skipped"}  # a skipped task has no host
    assert {task: (queue, host or None) for task, (_, queue, host, _) in placed.items()} == {
        task: ("default", WORKERS["default"] if task in ran else None) for task in placed}
    assert placed[("ingest_conversations", "ingest")][0] == placed[("evaluate_and_promote", "promote")][0] == "success"

    # The registry lives behind the MLflow server (PostgreSQL): one version, champion and challenger on it.
    client = MlflowClient(tracking_uri=stack["mlflow_uri"], registry_uri=stack["mlflow_uri"])
    [version] = client.search_model_versions("name='replyloop-assistant'")
    aliases = client.get_registered_model("replyloop-assistant").aliases
    assert aliases == {"champion": version.version, "challenger": version.version}

    # The curated snapshot is in the lake bucket, the adapter in the artifact bucket behind the server.
    snapshot_id = lake.read_bytes("curated/conversations/CURRENT").decode().strip()
    assert lake.exists(f"curated/conversations/{snapshot_id}/manifest.json")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack["mlflow_bucket"])
            for o in page.get("Contents", [])]
    assert any(k.endswith("adapter_model.safetensors") for k in keys), keys[:20]


def test_an_unreachable_broker_fails_the_task_naming_the_broker_and_it_is_retried(stack):
    """The scheduler cannot hand a task to Celery: the task instance fails, says which broker, and waits for
    its retry (DEFAULT_ARGS retries=2); nothing ran."""
    api, procs = stack["api"], stack["procs"]
    procs.stop("scheduler")
    broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    procs.start("scheduler-unreachable-broker", [AIRFLOW, "scheduler"],
                {**stack["env"], "AIRFLOW__CELERY__BROKER_URL": broker})
    run_id = api.trigger("ingest_conversations")

    def ingest_state():
        [ti] = [t for t in api.task_instances("ingest_conversations", run_id) if t["task_id"] == "ingest"]
        return ti if ti["state"] not in (None, "scheduled", "queued") else None
    ti = wait_until(ingest_state, timeout=120, what="the ingest task to leave the queue", procs=procs)
    assert (ti["state"], ti["try_number"], ti["max_tries"], ti["hostname"] or None) == ("up_for_retry", 1, 2, None)
    log = procs.log_tail("scheduler-unreachable-broker", chars=200_000)
    assert "Error sending Celery workload" in log and broker.split("//")[1].split("/")[0] in log, log[-3000:]
