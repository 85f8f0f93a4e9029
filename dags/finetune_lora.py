"""
### finetune_lora

Runs when a new curated snapshot lands (Asset `replyloop.curated_snapshot`), when monitoring asks for a
retrain (Asset `replyloop.retrain_request`, from `monitor_feedback`), or on demand. It trains on the
snapshot **named by the triggering snapshot event**; a retrain request (which names none) and a manual run
without the `snapshot_id` Param train on the latest snapshot (CURRENT). Checks there is enough new data
since the last trained snapshot (new conversations + new corrections; after a retrain request any new data
is enough, but a snapshot already trained on is not trained again), then fine-tunes a **LoRA** adapter on
the base model (SmolLM2-135M-Instruct by default) on queue `gpu` / pool `gpu` (bf16 autocast where the
device has it), logs params, per-step curves, system metrics, the dataset, a reproducibility manifest and
the adapter to MLflow and registers a version of `replyloop-assistant`. Updates the Asset
`replyloop.candidate_model`.

**Retries resume and never register twice**: the Airflow run id is the idempotency key; a retry continues
the MLflow run of the failed attempt from its last checkpoint, and returns the version already registered
for this run id instead of registering another.

**Params** override the committed `train.yaml`: `max_steps`, `learning_rate`, LoRA `lora_r`, `lora_alpha`,
`lora_dropout`, `lora_target_modules` (comma-separated), `gradient_checkpointing`; `force` trains even
without enough new data; `snapshot_id` trains on another snapshot. Impossible values stop the task with a
message naming the setting.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from common.assets import CANDIDATE_MODEL, CURATED_SNAPSHOT, DEFAULT_ARGS, RETRAIN_REQUEST, TAGS
from common.k8s import gpu_executor_config


def _event_extras(triggering_asset_events, asset=CURATED_SNAPSHOT) -> list[dict]:
    """The extras of the triggering events of one Asset, oldest first."""
    if not triggering_asset_events:
        return []
    return [dict(e.extra or {}) for events in triggering_asset_events.values() for e in events
            if e.asset.name == asset.name]


@dag(
    dag_id="finetune_lora",
    schedule=CURATED_SNAPSHOT | RETRAIN_REQUEST,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "training"],
    params={
        "max_steps": Param(None, type=["null", "integer"], minimum=1, maximum=100_000, title="Optimizer steps"),
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=0.1, title="Learning rate"),
        "lora_r": Param(None, type=["null", "integer"], minimum=1, maximum=256, title="LoRA rank"),
        "lora_alpha": Param(None, type=["null", "number"], exclusiveMinimum=0, title="LoRA alpha"),
        "lora_dropout": Param(None, type=["null", "number"], minimum=0, exclusiveMaximum=1, title="LoRA dropout"),
        "lora_target_modules": Param(None, type=["null", "string"], title="LoRA target modules (comma-separated)"),
        "gradient_checkpointing": Param(None, type=["null", "boolean"], title="Gradient checkpointing"),
        "force": Param(False, type="boolean", title="Train even without enough new data"),
        "snapshot_id": Param(None, type=["null", "string"], title="Snapshot id (default: the triggering one)"),
    },
)
def finetune_lora():
    @task.short_circuit
    def enough_new_data(params=None, triggering_asset_events=None) -> bool:
        from common.runtime import settings_for
        from replyloop.training.readiness import new_data_since_last_training, snapshot_to_train

        snapshot = snapshot_to_train(params, _event_extras(triggering_asset_events))
        requested = _event_extras(triggering_asset_events, RETRAIN_REQUEST)
        for request in requested:
            print(f"retraining requested by monitoring: {'; '.join(request.get('reasons') or [])}")
        report = new_data_since_last_training(settings_for(params), snapshot_id=snapshot,
                                              retrain_requested=bool(requested))
        print(report["message"])
        return bool(params.get("force")) or report["ready"]

    @task(queue="gpu", pool="gpu", outlets=[CANDIDATE_MODEL], executor_config=gpu_executor_config())
    def train(params=None, run_id=None, triggering_asset_events=None, outlet_events=None) -> dict:
        from common.runtime import quiet_libraries, settings_for
        from replyloop.training.config import load_train_config
        from replyloop.training.readiness import snapshot_to_train
        from replyloop.training.train import train as run_train

        quiet_libraries()
        settings = settings_for(params)
        names = ("max_steps", "learning_rate", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                 "gradient_checkpointing")
        cfg = load_train_config(settings.train_config, **{k: params.get(k) for k in names})
        snapshot = snapshot_to_train(params, _event_extras(triggering_asset_events))
        result = run_train(cfg, settings, snapshot_id=snapshot, airflow_run_id=run_id)
        outlet_events[CANDIDATE_MODEL].extra = {"version": result["version"], "run_id": result["run_id"],
                                                "snapshot_id": result["snapshot_id"]}
        return result

    enough_new_data() >> train()


finetune_lora()
