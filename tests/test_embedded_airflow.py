"""The embedded Airflow as the README starts it: `make airflow` (standalone: scheduler, dag-processor,
api-server, triggerer on SQLite with the LocalExecutor), from a shell whose PATH does not hold the venv.

The test waits for the REST API, lands a day of exports, triggers `ingest_conversations` for that day through
the REST API, sees it succeed, checks that the DAGs run unpaused (the scheduler made the nightly run) and that
the LocalExecutor has one task process per core, and stops every process it started (the group of `make`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psutil
import pytest

from airflow_cluster import AirflowApi, Processes, free_port, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LOCAL_EXECUTOR_TITLE = "airflow worker -- LocalExecutor"


def make_command() -> list[str]:
    """`make airflow`; when the suite runs from a venv other than the checkout's .venv (a shared one), make is
    pointed at it and told not to reinstall it."""
    venv = Path(sys.executable).parent.parent
    if venv.resolve() == (REPO / ".venv").resolve():
        return ["make", "-C", str(REPO), "airflow"]
    stamp = venv / ".replyloop-installed"
    if not stamp.exists():
        pytest.skip(f"{venv} was not installed by `make install` ({stamp} is missing)")
    return ["make", "-C", str(REPO), "airflow", f"VENV={venv}", "-o", str(stamp)]


def user_env(home: Path, port: int) -> dict[str, str]:
    """A new user's shell: none of the test session's Airflow/replyloop settings, no venv on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "REPLYLOOP_", "MLFLOW_", "AWS_", "PYTHON", "VIRTUAL_ENV", "MAKE", "MFLAGS"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update({"REPLYLOOP_HOME": str(home), "AIRFLOW__API__PORT": str(port),
                # the new snapshot triggers finetune_lora: keep it from training SmolLM2 in this test
                "REPLYLOOP_MIN_NEW_CONVERSATIONS": "1000000",
                # ports of their own, beside other Airflows on this machine
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())})
    return env


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # a task process that just ended (zombie or gone) is no worker
        return ""


def local_executor_workers(root_pid: int) -> int:
    root = psutil.Process(root_pid)
    return sum(1 for p in root.children(recursive=True) if _cmdline(p).startswith(LOCAL_EXECUTOR_TITLE))


def _ingest(api: AirflowApi, run_id: str) -> dict:
    [ti] = [t for t in api.task_instances("ingest_conversations", run_id) if t["task_id"] == "ingest"]
    return ti


def test_make_airflow_runs_the_ingestion_dag_triggered_through_the_rest_api(tmp_path):
    from replyloop.demo_data import generate_landing
    from replyloop.lake import LocalLake

    home, port = tmp_path / "home", free_port()
    procs = Processes(tmp_path / "logs")
    try:
        make = procs.start("make-airflow", make_command(), user_env(home, port))
        api = AirflowApi(f"http://127.0.0.1:{port}")
        wait_until(api.ready, timeout=180, what=f"`make airflow` to answer on port {port}", procs=procs)
        wait_until(lambda: "ingest_conversations" in api.dag_ids(), timeout=120, what="the DAGs to be parsed",
                   procs=procs)
        # A day of exports lands; the run triggered through the REST API (re-)reads that day, whether or not
        # the nightly schedule's first run (the DAGs start unpaused) got to it first.
        generate_landing(LocalLake(home / "lake").write_bytes, start_date=date(2026, 11, 20), days=1,
                         conversations_per_day=30)
        run_id = api.trigger("ingest_conversations", {"date": "2026-11-20"})
        state = api.wait_finished("ingest_conversations", run_id, timeout=300, procs=procs)
        ti = _ingest(api, run_id)
        assert (state, ti["state"]) == ("success", "success"), api.task_log("ingest_conversations", run_id, "ingest")
        # Unpaused: the scheduler created the nightly run by itself.
        assert "scheduled" in {r["run_type"] for r in api.runs("ingest_conversations")}
        # One LocalExecutor task process per core, not Airflow's default of 32.
        assert local_executor_workers(make.pid) == int(subprocess.check_output(["nproc"], text=True))
        assert (home / "lake" / "curated" / "conversations" / "CURRENT").is_file()
        api.close()
    finally:
        procs.stop_all()
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(home) in " ".join(p.info["cmdline"] or []) or f"--port {port}" in " ".join(p.info["cmdline"] or [])]
