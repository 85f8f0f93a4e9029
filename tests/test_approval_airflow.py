"""Human approval of a promotion through a running Airflow and its REST API (issue 7, point 5).

Airflow runs as processes (api-server, scheduler with the LocalExecutor, dag-processor) on SQLite, with the
SimpleAuthManager and one user, `ml-lead`, who logs in with a password as an ML lead would. Every run of
`evaluate_and_promote` requires approval (REPLYLOOP_REQUIRE_APPROVAL=true); the approval step is Airflow 3's
HITL ApprovalOperator, answered through the api-server's HITL endpoints
(`GET|PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/{map_index}/hitlDetails`):
- a rejection and a timeout (REPLYLOOP_APPROVAL_TIMEOUT_HOURS of about a minute) leave `champion` where it
  was and record the outcome on the version;
- monitoring's retrain request (the Asset `replyloop.retrain_request`, posted through the REST API) makes
  `finetune_lora` train the latest snapshot; the candidate's evaluation waits for approval, and the ML lead's
  approval moves `champion`, with approver and comment on the version.

The gate here is a permissive one (tests/data/distributed_eval: every set evaluated), since the approval
path, not the gate's judgement, is under test. Every process started is stopped, also on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import date
from pathlib import Path

import psutil
import pytest

from airflow_cluster import AIRFLOW, AirflowApi, Processes, airflow_env, clean_env, free_port, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
GATE = REPO / "tests" / "data" / "distributed_eval"
LEAD, PASSWORD = "ml-lead", secrets.token_urlsafe(12)
TIMEOUT_S = 45  # REPLYLOOP_APPROVAL_TIMEOUT_HOURS: long enough to answer, short enough to wait for
ANSWER_AFTER_S = 8  # see _awaiting: an answer within a second of the question races Airflow's scheduler
DAG = "evaluate_and_promote"


class LeadApi(AirflowApi):
    """The REST API as the ML lead: a JWT from `POST /auth/token` with a user name and password."""

    def ready(self) -> bool:
        if self.http.get("/api/v2/monitor/health").status_code != 200:
            return False
        token = self.http.post("/auth/token", json={"username": LEAD, "password": PASSWORD})
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return True

    def hitl(self, run_id: str, task_id: str = "approval") -> dict | None:
        r = self.http.get(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails")
        return r.json() if r.status_code == 200 else None

    def answer(self, run_id: str, option: str, comment: str, task_id: str = "approval") -> dict:
        return self._ok(self.http.patch(f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
                                        json={"chosen_options": [option], "params_input": {"comment": comment}}))

    def post_asset_event(self, name: str, extra: dict) -> dict:
        [asset] = [a for a in self._ok(self.http.get("/api/v2/assets", params={"name_pattern": name}))["assets"]
                   if a["name"] == name]
        return self._ok(self.http.post("/api/v2/assets/events", json={"asset_id": asset["id"], "extra": extra}))

    def states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}


TRAIN_YAML = """\
max_steps: 3
batch_size: 2
learning_rate: 0.003
warmup_steps: 1
max_seq_len: 256
eval_every: 1000
max_eval_examples: 2
lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}
"""


def _env(tmp: Path, home: Path, port: int, base_model: Path) -> dict[str, str]:
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps({LEAD: PASSWORD}))
    return {
        **airflow_env(clean_env(), tmp, api_port=port, executor="LocalExecutor"),
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{LEAD}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",  # the HITL timeout sweep
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "REPLYLOOP_HOME": str(home),
        "REPLYLOOP_BASE_MODEL": str(base_model),
        "REPLYLOOP_TRAIN_CONFIG": str(tmp / "train.yaml"),
        "REPLYLOOP_MIN_NEW_CONVERSATIONS": "1000000",  # nightly threshold never met: only a retrain request trains
        "REPLYLOOP_MAX_NEW_TOKENS": "6",
        "REPLYLOOP_REQUIRE_APPROVAL": "true",
        "REPLYLOOP_APPROVAL_TIMEOUT_HOURS": str(TIMEOUT_S / 3600),
        "REPLYLOOP_GATE_FILE": str(GATE / "gate.yaml"),
        "REPLYLOOP_EVAL_SETS_URI": str(GATE),
        "REPLYLOOP_HELDOUT_CAP": "4",
        "REPLYLOOP_GATE_LATENCY_PROMPTS": "2",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "TQDM_DISABLE": "1",
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_learner_dir):
    """A lake, three registered versions (v1 champion through the gate) and Airflow serving the same home."""
    from replyloop.demo_data import generate_landing
    from replyloop.evaluation.run import evaluate_candidate
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.settings import get_settings
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    tmp = tmp_path_factory.mktemp("approval")
    home, port = tmp / "home", free_port()
    (tmp / "train.yaml").write_text(TRAIN_YAML)
    env = _env(tmp, home, port, tiny_learner_dir)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        if key.startswith("REPLYLOOP_"):
            mp.setenv(key, value)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    files: dict[str, bytes] = {}
    generate_landing(files.__setitem__, start_date=date(2026, 11, 20), days=2, conversations_per_day=40)
    lake = open_lake(settings.lake)
    for path, data in files.items():
        if "dt=2026-11-20" in path:
            lake.write_bytes(path, data)
    run_ingest(settings)
    cfg = load_train_config(settings.train_config)
    versions = [train(cfg, settings)["version"] for _ in range(3)]
    assert evaluate_candidate(settings, version=versions[0])["promoted"] == versions[0]

    procs = Processes(tmp / "logs")
    started = []
    try:
        for args in (["db", "migrate"], ["pools", "set", "gpu", "1", "LoRA training slots"]):
            init = procs.start("init", [AIRFLOW, *args], env)
            assert init.wait(timeout=300) == 0, f"airflow {' '.join(args)}:\n{procs.log_tail('init')}"
            procs.procs.pop("init")
        for component in ("api-server", "scheduler", "dag-processor"):
            procs.start(component, [AIRFLOW, component] + (["--port", str(port)] if component == "api-server" else []),
                        env)
        started = [p.pid for p in procs.procs.values()]
        api = LeadApi(f"http://127.0.0.1:{port}")
        wait_until(api.ready, timeout=180, what="the Airflow api-server to answer", procs=procs)
        wait_until(lambda: {DAG, "finetune_lora"} <= api.dag_ids(), timeout=180, what="the DAGs to be parsed",
                   procs=procs)
        for dag_id in (DAG, "finetune_lora"):  # ingest_conversations and monitor_feedback stay paused
            api.unpause(dag_id)
        yield {"api": api, "procs": procs, "settings": settings, "versions": versions, "lake": lake, "files": files}
        api.close()
    finally:
        procs.stop_all()
        mp.undo()
        get_settings.cache_clear()
    assert not [pid for pid in started if _group_alive(pid)], "a process group of the test's Airflow is still running"


def _group_alive(pgid: int) -> bool:
    return any(_pgid(p) == pgid for p in psutil.process_iter())


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid) if p.status() != psutil.STATUS_ZOMBIE else None
    except (psutil.Error, ProcessLookupError):
        return None


def _awaiting(api: LeadApi, run_id: str, procs: Processes) -> dict:
    """Wait until the approval step asks its question (the gate passed and the run routed to approval)."""
    def asked():
        states = api.states(DAG, run_id)
        if states.get("evaluate") == "failed" or api.run_state(DAG, run_id) in ("success", "failed"):
            raise AssertionError(f"the run ended before asking for approval: {states}\n"
                                 + api.task_log(DAG, run_id, "evaluate")[-3000:])
        return states.get("approval") == "awaiting_input" and api.hitl(run_id)
    detail = wait_until(asked, timeout=300, what=f"{run_id} to wait for approval", procs=procs, interval=1)
    # Airflow 3.3.2 race: an answer that arrives before the scheduler has processed the paused task
    # process's exit is taken for a dead task (UP_FOR_RETRY, asked again after the retry delay). A person
    # does not answer within seconds; the test waits as long before it does.
    time.sleep(ANSWER_AFTER_S)
    return detail


def _tags(settings, version: str) -> dict:
    from replyloop import registry

    return registry.version_tags(settings, version)


def _champion(settings) -> str | None:
    from replyloop import registry

    return registry.alias_version(settings, registry.CHAMPION)


def test_a_rejection_through_the_rest_api_leaves_champion_and_records_who_and_why(cluster):
    from replyloop.registry import Tag

    api, procs, settings, (v1, v2, _) = cluster["api"], cluster["procs"], cluster["settings"], cluster["versions"]
    assert _champion(settings) == v1
    run_id = api.trigger(DAG, {"version": v2})
    detail = _awaiting(api, run_id, procs)
    assert detail["options"] == ["Approve", "Reject"] and f"version {v2}" in detail["subject"], detail
    answer = api.answer(run_id, "Reject", "perplexity report looks off")
    assert answer["responded_by"]["name"] == LEAD
    assert api.wait_finished(DAG, run_id, timeout=480, procs=procs) == "success"
    states = api.states(DAG, run_id)
    assert (states["promote_approved"], states["promote"], states["record_approval"]) == \
        ("skipped", "skipped", "success"), states
    assert _champion(settings) == v1
    tags = _tags(settings, v2)
    assert tags[Tag.GATE] == "passed"  # the gate passed; the human said no
    assert (tags[Tag.APPROVAL], tags[Tag.APPROVAL_BY], tags[Tag.APPROVAL_COMMENT]) == \
        ("rejected", LEAD, "perplexity report looks off")


def test_an_unanswered_approval_times_out_and_champion_stays(cluster):
    from replyloop.registry import Tag

    api, procs, settings, (v1, _, v3) = cluster["api"], cluster["procs"], cluster["settings"], cluster["versions"]
    assert _champion(settings) == v1
    run_id = api.trigger(DAG, {"version": v3})
    detail = _awaiting(api, run_id, procs)
    assert detail["defaults"] == ["Reject"]
    assert api.wait_finished(DAG, run_id, timeout=TIMEOUT_S + 360, procs=procs) == "success"
    assert api.states(DAG, run_id)["promote_approved"] == "skipped"
    assert api.hitl(run_id)["responded_by_user"] is None  # nobody answered: the defaults were applied
    assert _champion(settings) == v1
    tags = _tags(settings, v3)
    assert (tags[Tag.APPROVAL], tags[Tag.APPROVAL_BY]) == ("timed_out", "nobody (timed out)")


def test_a_retrain_request_trains_the_latest_snapshot_and_an_approval_promotes_it(cluster):
    from replyloop import registry
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.registry import Tag

    api, procs, settings, (v1, *_) = cluster["api"], cluster["procs"], cluster["settings"], cluster["versions"]
    assert _champion(settings) == v1
    # a few new conversations land and are curated: far below the nightly minimum
    for path, data in cluster["files"].items():
        if "dt=2026-11-21" in path:
            cluster["lake"].write_bytes(path, data)
    latest = run_ingest(settings)["snapshot_id"]
    assert _tags(settings, v1)[Tag.SNAPSHOT] != latest
    api.post_asset_event("replyloop.retrain_request", {"reasons": ["down-vote rate 0.31 > 0.2"]})

    def finetune_run():
        runs = api.runs("finetune_lora")
        return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None
    run = wait_until(finetune_run, timeout=300, what="the retrain request's finetune_lora run", procs=procs)
    assert (run["run_type"], run["state"]) == ("asset_triggered", "success"), api.states("finetune_lora",
                                                                                         run["dag_run_id"])
    assert api.states("finetune_lora", run["dag_run_id"]) == {"enough_new_data": "success", "train": "success"}
    new = max((str(v.version) for v in registry.versions(settings)), key=int)
    assert _tags(settings, new)[Tag.SNAPSHOT] == latest

    def evaluate_run():
        runs = [r for r in api.runs(DAG) if r["run_type"] == "asset_triggered"]
        return runs[0]["dag_run_id"] if runs else None
    run_id = wait_until(evaluate_run, timeout=300, what="the candidate's evaluation run", procs=procs)
    detail = _awaiting(api, run_id, procs)
    assert f"version {new}" in detail["subject"], detail
    assert _champion(settings) == v1, "nothing moves before the ML lead answers"
    api.answer(run_id, "Approve", "held-out and golden both up")
    assert api.wait_finished(DAG, run_id, timeout=480, procs=procs) == "success"
    assert _champion(settings) == new
    tags = _tags(settings, new)
    assert (tags[Tag.APPROVAL], tags[Tag.APPROVAL_BY], tags[Tag.APPROVAL_COMMENT]) == \
        ("approved", LEAD, "held-out and golden both up")
    [move] = registry.audit_log(settings, new)[-1:]
    assert (move["alias"], move["from"], move["to"], move["by"]) == ("champion", v1, new, LEAD)
    assert "held-out and golden both up" in move["why"]
