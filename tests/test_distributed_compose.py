"""docker/docker-compose.yaml and docker/.env.example agree with the package and the DAGs: the services and
their start-up order, the queues the workers consume, the connection, pool and variables the tasks read.

No Docker engine runs here, so the images are not built; `docker-compose config` (Debian's package, which
.ci/run installs) validates the file where the binary is present.
"""

from __future__ import annotations

import json
import re
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker" / "docker-compose.yaml"
ENV_EXAMPLE = REPO / "docker" / ".env.example"
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                      "airflow-worker", "airflow-worker-gpu")
ONE_SHOT = ("airflow-init", "minio-init")
SERVICES = {"postgres", "redis", "minio", "mlflow", "replyloop-api", *AIRFLOW_COMPONENTS, *ONE_SHOT}
_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR:?error}, $$) over a parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.groups()
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} must be set: {arg}")
        return arg if op else ""
    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(env_example) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env_example)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags


def _command(service: dict) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_every_variable_the_compose_file_reads_is_in_the_env_example(env_example):
    used = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if m.group(1)}
    assert used - set(env_example) == set(), f"add to {ENV_EXAMPLE.name}: {sorted(used - set(env_example))}"


def test_the_services_and_their_start_up_order(services):
    assert set(services) == SERVICES
    for name, svc in services.items():
        if name not in ONE_SHOT:
            assert "healthcheck" in svc, f"{name} has no health check"
    for name in (*AIRFLOW_COMPONENTS, "mlflow", "replyloop-api", *ONE_SHOT):
        assert services[name].get("depends_on"), f"{name} starts without waiting for anything"
        for dep, cond in services[name]["depends_on"].items():
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond == {"condition": want}, f"{name} -> {dep}: {cond}"
    for name in AIRFLOW_COMPONENTS:
        assert "airflow-init" in services[name]["depends_on"], f"{name} does not wait for the migrations"
    for name in ("mlflow", "replyloop-api", "airflow-worker", "airflow-worker-gpu"):
        assert "minio-init" in services[name]["depends_on"], f"{name} may use a bucket before it exists"


def test_the_buckets_are_created_before_use(services):
    init = " ".join(services["minio-init"]["command"])
    buckets = {services["minio-init"]["environment"][k] for k in ("LAKE_BUCKET", "MLFLOW_BUCKET")}
    assert "mc mb --ignore-existing" in init and "${LAKE_BUCKET}" in init and "${MLFLOW_BUCKET}" in init
    lake = services["airflow-worker"]["environment"]["REPLYLOOP_LAKE_URI"]
    assert lake.startswith("s3://") and lake.removeprefix("s3://").split("/")[0] in buckets
    assert services["replyloop-api"]["environment"]["REPLYLOOP_LAKE_URI"] == lake
    mlflow_cmd = " ".join(_command(services["mlflow"]))
    assert '--artifacts-destination "s3://${MLFLOW_BUCKET}/' in mlflow_cmd
    assert services["mlflow"]["environment"]["MLFLOW_BUCKET"] in buckets


def test_airflow_components_share_the_execution_api_secret_and_url(services):
    envs = [services[name]["environment"] for name in (*AIRFLOW_COMPONENTS, "airflow-init")]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CORE__EXECUTOR",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL"):
        values = {env.get(key) for env in envs}
        assert len(values) == 1 and None not in values, f"{key} differs between Airflow components: {values}"
    env = envs[0]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    port = _option(_command(services["airflow-apiserver"]), "--port")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://airflow-apiserver:{port}/execution/"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
    # Airflow and MLflow never share a database (both keep an alembic_version table)
    airflow_db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1]
    mlflow_db = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].rsplit("/", 1)[1]
    assert airflow_db != mlflow_db


def test_workers_consume_the_queues_the_tasks_use(services, dags):
    gpu_tasks = {(d.dag_id, t.task_id) for d in dags.values() for t in d.tasks if t.queue == "gpu"}
    assert gpu_tasks == {("finetune_lora", "train")}
    default_worker = _command(services["airflow-worker"])
    gpu_worker = _command(services["airflow-worker-gpu"])
    default_queue = services["airflow-worker"]["environment"]["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
    other_queues = {t.queue for d in dags.values() for t in d.tasks if t.queue != "gpu"}
    assert _option(default_worker, "--queues") == default_queue and other_queues == {default_queue}
    assert _option(gpu_worker, "--queues") == "gpu" and _option(gpu_worker, "--concurrency") == "1"
    train = dags["finetune_lora"].get_task("train")
    init = " ".join(_command(services["airflow-init"]))
    assert f'airflow pools set {train.pool} "${{AIRFLOW_GPU_POOL_SLOTS}}"' in init
    [device] = services["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == "1", "GPU_WORKER_GPUS of the env example: a worker trains on the GPUs it reserves"
    assert "build" in services["airflow-worker-gpu"] and "TORCH_INDEX_URL" not in str(
        services["airflow-worker-gpu"]["build"])  # PyPI's CUDA build of torch


def test_the_lake_connection_is_the_one_the_tasks_read(services):
    from common.runtime import LAKE_CONN_ID

    for name in ("airflow-worker", "airflow-worker-gpu"):
        env = services[name]["environment"]
        conn = json.loads(env[f"AIRFLOW_CONN_{LAKE_CONN_ID.upper()}"])
        assert conn["conn_type"] == "aws" and conn["login"] and conn["password"]
        assert conn["extra"]["endpoint_url"] == "http://minio:9000"


def test_every_replyloop_variable_is_a_setting(services, env_example):
    from replyloop.settings import Settings

    known = {f"REPLYLOOP_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env_example if k.startswith("REPLYLOOP_")} - known == set()
    for name, svc in services.items():
        env = svc.get("environment") or {}
        unknown = {k for k in env if k.startswith("REPLYLOOP_")} - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which replyloop.settings does not read"
    for name in ("airflow-worker", "airflow-worker-gpu", "replyloop-api"):
        assert services[name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "--port 5000" in " ".join(_command(services["mlflow"]))


def test_docker_compose_accepts_the_file():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; .ci/run installs it)")
    out = subprocess.run([binary, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"]})  # the shell's variables would win over the env file
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert set(resolved["services"]) == SERVICES
    ours = interpolate(yaml.safe_load(COMPOSE.read_text()), read_env_file(ENV_EXAMPLE))["services"]
    for name in SERVICES:  # our reading of the file is docker-compose's
        assert {k: str(v) for k, v in (resolved["services"][name].get("environment") or {}).items()} == \
               {k: str(v) for k, v in (ours[name].get("environment") or {}).items()}, name
