"""Processes and the REST API of a real Airflow, for the tests that run it as users do.

`Processes` starts each component in its own process group and stops every group it started (also from
atexit, should a test be interrupted). `AirflowApi` talks to the api-server the way a user or a script
does: a JWT from `GET /auth/token` (SimpleAuthManager with all users admins), then `/api/v2`.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"success", "failed"}


def clean_env() -> dict[str, str]:
    """This process's environment without Airflow, MLflow, replyloop or AWS settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW", "REPLYLOOP", "AWS_"))}


def airflow_env(base: dict[str, str], tmp: Path, *, api_port: int, executor: str) -> dict[str, str]:
    """`base` plus what every Airflow component of a test cluster shares: the repo's DAGs, plugins and
    package, one JWT secret (or workers fail with "Invalid auth token", apache/airflow#49646), the
    execution API on `api_port`, and short scheduler / DAG-processor intervals."""
    return {
        **base,
        "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{base.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "tests")]),
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_hostname() -> str:
    """`[core] hostname_callable` for the test's Celery workers: each worker process is told its name
    (REPLYLOOP_WORKER_HOSTNAME), as separate hosts would each have their own; task instances record it."""
    return os.environ.get("REPLYLOOP_WORKER_HOSTNAME") or socket.getfqdn()


class ProcessFailed(RuntimeError):
    pass


class Processes:
    """Named child processes, each the leader of its own process group, logging to `logdir/<name>.log`."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        atexit.register(self.stop_all)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a terminated test run still cleans up
            signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ProcessFailed(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def stop(self, name: str, timeout: float = 8) -> None:
        self._stop({name: self.procs.pop(name)}, timeout)

    def stop_all(self, timeout: float = 8) -> None:
        """SIGTERM to every group at once, then SIGKILL to any group still there after `timeout`."""
        procs, self.procs = self.procs, {}
        self._stop(procs, timeout)

    @staticmethod
    def _stop(procs: dict[str, subprocess.Popen], timeout: float) -> None:
        for proc in procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                _wait_group_gone(proc.pid, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the fixtures' finally blocks, then atexit


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)  # the whole group: task processes and pool children too
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Wait until no process of the group is left (children may outlive the leader briefly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise subprocess.TimeoutExpired(f"process group {pgid}", timeout)


def wait_until(check, *, timeout: float, what: str, procs: Processes | None = None, interval: float = 1.0):
    """Poll `check()` until it returns a truthy value; fail naming `what` (and any dead process)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if procs is not None:
            procs.check_alive()
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


class AirflowApi:
    """The api-server's public REST API (v2), authenticated as SimpleAuthManager's admin."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def ready(self) -> bool:
        if self.http.get("/api/v2/monitor/health").status_code != 200:
            return False
        token = self.http.get("/auth/token")  # all users are admins: a token without credentials
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return True

    def _ok(self, response: httpx.Response) -> dict:
        if response.status_code >= 400:
            raise AssertionError(f"{response.request.method} {response.request.url}: "
                                 f"{response.status_code} {response.text[:2000]}")
        return response.json()

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self._ok(self.http.get("/api/v2/dags", params={"limit": 100}))["dags"]}

    def unpause(self, dag_id: str) -> None:
        self._ok(self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}))

    def trigger(self, dag_id: str, conf: dict | None = None, attempts: int = 5) -> str:
        """Create a run. On SQLite (the embedded mode) a write that meets another component's lock answers
        500 "Database error"; like a user pressing the button again, try a few times."""
        body = {"logical_date": None, "conf": conf or {}}
        for _ in range(attempts - 1):
            response = self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            if response.status_code != 500 or "Database error" not in response.text:
                break
            time.sleep(3)
        else:
            response = self.http.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        return self._ok(response)["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self._ok(self.http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}))["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._ok(self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._ok(self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"))["task_instances"]

    def wait_finished(self, dag_id: str, run_id: str, *, timeout: float, procs: Processes | None = None) -> str:
        return wait_until(lambda: (s := self.run_state(dag_id, run_id)) in TERMINAL and s, timeout=timeout,
                          what=f"run {run_id} of {dag_id} to finish", procs=procs)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        r = self.http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                          params={"full_content": True}, headers={"Accept": "application/json"})
        content = r.json().get("content") if r.status_code == 200 else r.text
        if isinstance(content, list):
            return "\n".join(str(e.get("event", e)) if isinstance(e, dict) else str(e) for e in content)
        return str(content)

    def close(self) -> None:
        self.http.close()
