"""Training end to end on the tiny model: resumable, idempotent, reproducible, traceable; bad input named.

One module-scoped lake and MLflow store; the tests read the runs the fixture made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import curate_demo_days, module_home


CFG = dict(max_steps=4, batch_size=2, max_seq_len=96, eval_every=2, checkpoint_every=2, max_eval_examples=2,
           validation_fraction=0.3,  # of 36 tiny conversations: some validation examples fit 96 tokens
           early_stopping_patience=0, warmup_steps=1, lora_r=4, lora_target_modules="q_proj,v_proj,down_proj")


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    with module_home(tmp_path_factory, "train", BASE_MODEL=str(tiny_model_dir), MAX_NEW_TOKENS="6") as settings:
        curate_demo_days(settings, 40)
        yield settings


def cfg(**overrides):
    from replyloop.training.config import load_train_config

    return load_train_config(**{**CFG, **overrides})


def n_versions(settings) -> int:
    from replyloop import registry

    return len(registry.versions(settings))


def adapter_weights(settings, version: str) -> dict:
    from safetensors.torch import load_file

    from replyloop.registry import download_version

    return load_file(download_version(settings, version).adapter_dir / "adapter_model.safetensors")


def checkpoint_file(settings, run_id: str):
    [path] = settings.artifact_root.rglob(f"{run_id}/artifacts/checkpoints/step-*/state.pt")
    return path


@pytest.fixture(scope="module")
def runs(env):
    """An uninterrupted run, and a run killed after step 3 that a retry resumes (after a corrupt checkpoint)."""
    from replyloop.training.checkpoint import CheckpointError
    from replyloop.training.loop import InjectedFailure
    from replyloop.training.train import train

    out = {"a": train(cfg(), env, airflow_run_id="scheduled__a")}
    failing = env.model_copy(update={"train_fail_after_step": 3})
    with pytest.raises(InjectedFailure, match="after step 3"):
        train(cfg(), failing, airflow_run_id="scheduled__b")
    out["versions_after_failure"] = n_versions(env)
    [run_b] = __import__("mlflow").search_runs(filter_string="tags.`replyloop.airflow_run_id` = 'scheduled__b'",
                                               experiment_names=[env.experiment], output_format="list")
    state = checkpoint_file(env, run_b.info.run_id)
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint checkpoints/step-000002/state.pt of MLflow run \w+ is corrupt"):
        train(cfg(), env, airflow_run_id="scheduled__b")
    out["versions_after_corrupt"] = n_versions(env)
    state.write_bytes(good)
    out["b"] = train(cfg(), env, airflow_run_id="scheduled__b")
    out["b_again"] = train(cfg(), env, airflow_run_id="scheduled__b")
    out["versions_end"] = n_versions(env)
    return out


def test_retry_resumes_to_the_same_result_and_registers_once(env, runs):
    a, b = runs["a"], runs["b"]
    assert runs["versions_after_failure"] == runs["versions_after_corrupt"] == 1, "no version from failed attempts"
    assert b["resumed_from"] == 2 and a["resumed_from"] is None
    assert b["steps"] == a["steps"] == 4
    assert b["final_train_loss"] == a["final_train_loss"] and b["final_eval_loss"] == a["final_eval_loss"]
    wa, wb = adapter_weights(env, a["version"]), adapter_weights(env, b["version"])
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa), "bit-identical adapters"
    assert runs["b_again"]["version"] == b["version"] and runs["b_again"]["already_registered"]
    assert runs["versions_end"] == 2


def test_version_and_run_are_traceable(env, runs):
    import mlflow

    from replyloop import registry
    from replyloop.training.manifest import manifest_of_version

    tags = registry.version_tags(env, runs["a"]["version"])
    for tag in (registry.Tag.DATASET_HASH, registry.Tag.BASE_MODEL_SHA, registry.Tag.CHAT_TEMPLATE_SHA,
                registry.Tag.CODE_VERSION, registry.Tag.SNAPSHOT):
        assert tags.get(tag), tag
    assert tags[registry.Tag.AIRFLOW_RUN_ID] == "scheduled__a"
    run = mlflow.get_run(runs["a"]["run_id"])
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.digest == tags[registry.Tag.DATASET_HASH][:32]
    client = registry.client(env)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(1, 5))
    assert len(client.get_metric_history(run.info.run_id, "tokens_per_s")) == 4
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 4
    import torch

    from replyloop.modeling import bf16_supported

    expected_dtype = "bfloat16" if bf16_supported(torch.device("cpu")) else "float32"  # precision "auto"
    assert (run.data.params["lora_r"], run.data.params["dtype"]) == ("4", expected_dtype)
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)} | {
        f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert {"manifest.json", "plots/loss_curve.png"} <= artifacts
    ma, mb = manifest_of_version(env, runs["a"]["version"]), manifest_of_version(env, runs["b"]["version"])
    assert ma == mb, "the resumed run and the uninterrupted one share one manifest (and have equal weights)"
    assert ma["seed"] == 17 and ma["train_config"]["lora"]["r"] == 4 and ma["packages"]["torch"]
    assert ma["dataset_hash"] == tags[registry.Tag.DATASET_HASH] and ma["device"] == "cpu"
    splits = ma["splits"]  # training's own validation split: its size is on the run and in the manifest
    assert splits["validation_conversations"] > 0 and splits["train_conversations"] > splits["validation_conversations"]
    assert 0 < splits["validation_examples"] <= 2 and splits["contaminated_dropped"] == 0
    assert {k: run.data.params[k] for k in ("validation_conversations", "train_conversations")} == {
        k: str(splits[k]) for k in ("validation_conversations", "train_conversations")}


def test_train_like_rebuilds_a_version(env, runs):
    from replyloop.training.train import train_like

    again = train_like(env, runs["a"]["version"], register=False)
    assert again["final_train_loss"] == runs["a"]["final_train_loss"]
    assert again["snapshot_id"] == runs["a"]["snapshot_id"] and again["steps"] == runs["a"]["steps"]


def test_registered_version_answers_in_a_fresh_process(env, runs):
    code = (
        "import json, mlflow\n"
        "from replyloop.settings import get_settings\n"
        "mlflow.set_tracking_uri(get_settings().tracking_uri)\n"
        f"m = mlflow.pyfunc.load_model('models:/{env.model_name}/{runs['a']['version']}')\n"
        "single = m.predict(['Where is my parcel?'])\n"
        "multi = m.predict([[{'role': 'customer', 'text': 'Hi'}, {'role': 'agent', 'text': 'Hello, how can we help?'},"
        " {'role': 'customer', 'text': 'My order is late'}]])\n"
        "print(json.dumps([single, multi]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-3000:]
    single, multi = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(single) == 1 and len(multi) == 1 and all(isinstance(r, str) for r in single + multi)


def test_too_few_examples_stops_with_a_message_and_registers_nothing(env, runs):
    from replyloop.training.train import TrainingError, train

    before = n_versions(env)
    with pytest.raises(TrainingError, match=r"gives \d+ trainable examples .* min_train_examples=1000"):
        train(cfg(min_train_examples=1000), env)
    with pytest.raises(TrainingError, match=r"skipped: \{'too_long': [1-9]\d*.*raise max_seq_len=12"):
        train(cfg(max_seq_len=12), env)
    assert n_versions(env) == before


def test_impossible_lora_settings_are_named(env):
    from replyloop.training.config import TrainConfigError
    from replyloop.training.train import train

    with pytest.raises(TrainConfigError, match=r"lora.r=0 must be an integer >= 1"):
        cfg(lora_r=0)
    with pytest.raises(TrainConfigError, match=r"lora.alpha=-1 must be > 0"):
        cfg(lora_alpha=-1)
    with pytest.raises(TrainConfigError, match=r"lora.target_modules: qq_proj not a linear layer of the base model"):
        train(cfg(lora_target_modules="q_proj,qq_proj"), env)


def test_missing_base_model_and_snapshot_are_named(env, monkeypatch, tmp_path):
    from replyloop.modeling import BaseModelError
    from replyloop.training.data import SnapshotError
    from replyloop.training.train import train

    with pytest.raises(BaseModelError, match=r"REPLYLOOP_BASE_MODEL='/nowhere/model': no such folder"):
        train(cfg(), env.model_copy(update={"base_model": "/nowhere/model"}))
    with pytest.raises(SnapshotError, match=r"no curated snapshot in .*empty-lake.*run ingestion first"):
        train(cfg(), env.model_copy(update={"lake_uri": str(tmp_path / "empty-lake")}))


def test_new_corrections_alone_count_as_new_data(env, runs):
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.ingest.snapshot import read_snapshot
    from replyloop.lake import open_lake
    from replyloop.training.readiness import new_data_since_last_training

    lake = open_lake(env.lake)
    before = new_data_since_last_training(env)
    assert (before["new_conversations"], before["new_corrections"], before["ready"]) == (0, 0, False)
    again = new_data_since_last_training(env, retrain_requested=True)
    assert again["ready"] is False, "a retrain request does not train again on the snapshot already trained on"
    _, messages, _ = read_snapshot(lake)
    reply = messages[(messages["role"] == "agent") & (messages["split"] == "train")].iloc[0]
    event = {"event_id": "f-test-1", "conversation_id": reply["conversation_id"], "message_id": reply["message_id"],
             "rating": "down", "correction": "Sorry about that! Please send us a DM.", "model_version": None,
             "created_at": "2026-11-21T09:00:00Z"}
    lake.write_bytes("raw/feedback/dt=2026-11-21/feedback-0000.jsonl", (json.dumps(event) + "\n").encode())
    run_ingest(env)
    after = new_data_since_last_training(env.model_copy(update={"min_new_conversations": 1}))
    assert (after["new_conversations"], after["new_corrections"], after["ready"]) == (0, 1, True), after["message"]
    strict = env.model_copy(update={"min_new_conversations": 50})
    assert new_data_since_last_training(strict)["ready"] is False
    requested = new_data_since_last_training(strict, retrain_requested=True)
    assert requested["ready"] is True, "a retrain request waives the minimum: one new correction is enough"
    assert "a retrain request" in requested["message"]


KILLED_TASK = """
import json, sys
from replyloop.settings import get_settings
from replyloop.training.config import load_train_config
from replyloop.training.train import train
train(load_train_config(**json.loads(sys.argv[1])), get_settings(), airflow_run_id="scheduled__killed")
"""


def _poll(probe, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the training process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout}s")


def test_a_training_process_killed_part_way_is_resumed_by_its_retry_to_the_uninterrupted_result(env, runs):
    """The worker running the task dies (SIGKILL: no exception handler, no clean-up runs); the retry with the
    same Airflow run id resumes from the last checkpoint the dead process completed and ends at the same step
    count, losses and bit-identical adapter as an uninterrupted run; the dead attempt registered nothing."""
    import mlflow

    from replyloop import registry
    from replyloop.training.checkpoint import latest_pointer
    from replyloop.training.train import train

    longer = {**CFG, "max_steps": 8}
    whole = train(cfg(max_steps=8), env, airflow_run_id="scheduled__whole")
    before = n_versions(env)
    client = registry.client(env)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_TASK, json.dumps(longer)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        run_id = _poll(lambda: next((r.info.run_id for r in mlflow.search_runs(
            filter_string="tags.`replyloop.airflow_run_id` = 'scheduled__killed'", experiment_names=[env.experiment],
            output_format="list")), None), 240, "an MLflow run for the task", proc)
        step = _poll(lambda: (latest_pointer(client, run_id) or {}).get("step"), 240, "a checkpoint", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and step < 8
    assert n_versions(env) == before, "the killed attempt registered nothing"

    retry = train(cfg(max_steps=8), env, airflow_run_id="scheduled__killed")
    assert retry["resumed_from"] is not None and retry["resumed_from"] >= step
    assert retry["steps"] == whole["steps"] == 8
    assert (retry["final_train_loss"], retry["final_eval_loss"]) == (whole["final_train_loss"], whole["final_eval_loss"])
    wa, wb = adapter_weights(env, whole["version"]), adapter_weights(env, retry["version"])
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa), "bit-identical adapters"
