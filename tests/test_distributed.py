"""The distributed mode's stores, as docker/docker-compose.yaml wires them, on this machine's services:
an MLflow tracking server whose backend store is PostgreSQL and whose artifacts are proxied to S3, the
lake on S3 (moto's server over HTTP on loopback, standing in for MinIO), and Airflow's metadata database
on PostgreSQL. (The Celery executor and its Redis broker are not exercised here.)

PostgreSQL is expected on 127.0.0.1:5432 (trust auth, user postgres). Where it is absent these tests
skip, saying so, except under CI (`CI` set), where its absence is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import date

import socket

import boto3
import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the MLflow server exited with {proc.returncode}:\n{open(log).read()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the MLflow server did not listen on {port} within {timeout} s:\n{open(log).read()[-3000:]}")


@pytest.fixture
def postgres_db():
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        message = f"PostgreSQL is not reachable on {PG['host']}:{PG['port']} as {PG['user']}: {exc}".strip()
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    admin.autocommit = True
    name = f"replyloop_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    # the psycopg2 driver named explicitly: SQLAlchemy 2.1 takes psycopg 3 for a bare postgresql://
    yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def mlflow_server(postgres_db, s3_env, tmp_path):
    """`mlflow server` on PostgreSQL, proxying artifacts to s3://<bucket>/mlartifacts."""
    bucket = f"mlflow-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    port = free_port()
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_env}
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", postgres_db, "--artifacts-destination", f"s3://{bucket}/mlartifacts",
         "--serve-artifacts"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, timeout=90, proc=proc, log=tmp_path / "mlflow-server.log")
        yield {"uri": f"http://127.0.0.1:{port}", "bucket": bucket, "db": postgres_db}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_loop_with_mlflow_on_postgres_and_artifacts_and_lake_on_s3(mlflow_server, tiny_model_dir, tmp_path,
                                                                      monkeypatch):
    import mlflow
    import psycopg2

    from replyloop import registry
    from replyloop.demo_data import generate_landing
    from replyloop.evaluation.run import evaluate_candidate
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.serving.model_store import ModelStore
    from replyloop.settings import get_settings
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    lake_bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=lake_bucket)
    monkeypatch.setenv("REPLYLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["uri"])
    monkeypatch.setenv("REPLYLOOP_LAKE_URI", f"s3://{lake_bucket}/lake")
    monkeypatch.setenv("REPLYLOOP_BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("REPLYLOOP_MAX_NEW_TOKENS", "8")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        lake = open_lake(settings.lake)
        generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=60)
        manifest = run_ingest(settings)
        assert manifest["status"] == "ok" and lake.exists(
            f"curated/conversations/{manifest['snapshot_id']}/manifest.json")

        trained = train(load_train_config(max_steps=2, batch_size=2, max_eval_examples=4), settings)
        gate = evaluate_candidate(settings, max_prompts=4)
        if not gate["passed"]:  # a 2-step tiny model may fail the gate; promotion by hand is the ML lead's call
            registry.promote(settings, trained["version"], reason="distributed-mode test", by="manual")
        assert registry.alias_version(settings, "champion") == trained["version"]

        # the registry lives in PostgreSQL...
        with psycopg2.connect(mlflow_server["db"].replace("+psycopg2", "")) as conn, conn.cursor() as cur:
            cur.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s", (settings.model_name,))
            assert ("champion", int(trained["version"])) in cur.fetchall()
        # ...the adapter in S3, behind the server
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=mlflow_server["bucket"])["Contents"]]
        assert any(k.endswith("adapter_model.safetensors") for k in keys), keys[:10]

        # and the serving side loads the champion through the server
        loaded = ModelStore(settings).load()
        assert loaded.version == trained["version"]
        [reply] = loaded.generator.reply(["Where is my order?"])
        assert isinstance(reply, str)
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        get_settings.cache_clear()


def test_airflow_metadata_on_postgres_runs_the_ingestion_dag(postgres_db, tmp_path):
    """Airflow's metadata database on PostgreSQL, as in the compose file: migrate, then a DAG run (its
    task curating files in worker processes) whose state is read back from PostgreSQL."""
    import psycopg2

    from replyloop.demo_data import generate_landing
    from replyloop.lake import LocalLake

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    home = tmp_path / "home"
    generate_landing(LocalLake(home / "lake").write_bytes, start_date=date(2026, 11, 20), days=1,
                     conversations_per_day=40)
    env = {**os.environ, "REPLYLOOP_HOME": str(home), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(repo, "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_db, "GX_ANALYTICS_ENABLED": "False",
           "REPLYLOOP_INGEST_WORKERS": "2"}  # worker processes spawned from inside an Airflow task
    env.pop("MLFLOW_TRACKING_URI", None)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    for args in (["db", "migrate"], ["dags", "reserialize"], ["dags", "test", "ingest_conversations"]):
        out = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"airflow {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    with psycopg2.connect(postgres_db.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT state FROM dag_run WHERE dag_id = 'ingest_conversations'")
        assert cur.fetchall() == [("success",)]
    assert (home / "lake" / "curated" / "conversations" / "CURRENT").exists()
    assert "with 2 worker process(es)" in out.stdout + out.stderr
