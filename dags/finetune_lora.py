"""
### finetune_lora

Runs when a new curated snapshot lands (Asset `replyloop.curated_snapshot`) or on demand. Checks there is
enough new data since the last trained snapshot, then fine-tunes a **LoRA** adapter on the base model
(SmolLM2-135M-Instruct by default) on queue `gpu` / pool `gpu` (CUDA with bf16 where present, CPU
otherwise), logs params, curves, lineage and the adapter to MLflow and registers a new version of
`replyloop-assistant`. Updates the Asset `replyloop.candidate_model`.

**Params** override the committed `train.yaml`: `max_steps`, `lora_r`, `learning_rate`; `force` trains
even without enough new data; `snapshot_id` trains on an older snapshot.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from common.assets import CANDIDATE_MODEL, CURATED_SNAPSHOT, DEFAULT_ARGS, TAGS
from common.k8s import gpu_executor_config


@dag(
    dag_id="finetune_lora",
    schedule=[CURATED_SNAPSHOT],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "training"],
    params={
        "max_steps": Param(None, type=["null", "integer"], minimum=1, maximum=100_000, title="Optimizer steps"),
        "lora_r": Param(None, type=["null", "integer"], minimum=1, maximum=256, title="LoRA rank"),
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=0.1, title="Learning rate"),
        "force": Param(False, type="boolean", title="Train even without enough new data"),
        "snapshot_id": Param(None, type=["null", "string"], title="Snapshot id (default CURRENT)"),
    },
)
def finetune_lora():
    @task.short_circuit
    def enough_new_data(params=None) -> bool:
        from common.runtime import settings_for
        from replyloop.training.readiness import new_data_since_last_training

        report = new_data_since_last_training(settings_for(params), snapshot_id=params.get("snapshot_id"))
        print(report["message"])
        return bool(params.get("force")) or report["ready"]

    @task(queue="gpu", pool="gpu", outlets=[CANDIDATE_MODEL], executor_config=gpu_executor_config())
    def train(params=None, outlet_events=None) -> dict:
        from common.runtime import quiet_libraries, settings_for
        from replyloop.training.config import load_train_config
        from replyloop.training.train import train as run_train

        quiet_libraries()
        settings = settings_for(params)
        cfg = load_train_config(settings.train_config, max_steps=params.get("max_steps"),
                                lora_r=params.get("lora_r"), learning_rate=params.get("learning_rate"))
        result = run_train(cfg, settings, snapshot_id=params.get("snapshot_id"))
        outlet_events[CANDIDATE_MODEL].extra = {"version": result["version"], "run_id": result["run_id"]}
        return result

    enough_new_data() >> train()


finetune_lora()
