"""LoRA fine-tuning of the base model on one curated snapshot, tracked in MLflow, resumable, idempotent.

    snapshot -> examples -> LoRA model -> loop (checkpoints) -> best adapter -> pyfunc model -> version

An Airflow task passes its run id as `airflow_run_id`. It is the idempotency key of the whole step:
  - a version already registered for it is returned as it is (a retry never registers a second one);
  - an MLflow run already started for it is continued from its last checkpoint (a killed task resumes and
    ends at the same step with the same weights as an uninterrupted run).
Nothing is registered until the adapter and the pyfunc model are completely logged.

With `train_processes` > 1 (default: one per visible GPU) `train` launches that many data-parallel
processes (training/distributed.py), each running `train_here`; rank 0 alone talks to MLflow.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path

from replyloop import registry
from replyloop.chat import template_sha
from replyloop.modeling import load_base, resolve_base_model, training_precision
from replyloop.reports import loss_curve_png
from replyloop.settings import Settings, get_settings
from replyloop.tracking import code_version, configure
from replyloop.training import checkpoint, distributed
from replyloop.training.config import TrainConfig, check_target_modules, make_lora_config
from replyloop.training.data import TrainingData, load_training_data, mlflow_dataset
from replyloop.training.examples import build_examples
from replyloop.training.loop import Trainer, held_out_loss
from replyloop.training.manifest import ARTIFACT as MANIFEST, build_manifest

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot start or finish; the message names the snapshot, setting or run."""


def mean_loss(model, examples, pad_id: int, batch_size: int) -> float:
    """Token-weighted held-out loss in fp32 (used by the evaluation)."""
    return held_out_loss(model, examples, pad_id, batch_size)


def set_threads(n: int) -> None:
    """torch's CPU threads: `n`, or torch's own default when 0. Two threads on two cores of which one is
    busy with another job stall at every parallel op (each waits a scheduler slice for the other); the
    measured effect is in docs/training.md."""
    import torch

    if n:
        torch.set_num_threads(n)


def build_lora_model(base, cfg: TrainConfig, dtype, *, fused: bool = True):
    """The base model (weights in `dtype`) with fresh LoRA adapters (fp32) on the configured target modules,
    computed by the fused LoRA projection (`training/fused_lora.py`) unless `fused` is False (peft's own)."""
    import torch
    from peft import get_peft_model

    from replyloop.training.fused_lora import fuse_lora

    model, tok = load_base(base, for_training=True, dtype=dtype)
    check_target_modules(model, cfg.lora)
    torch.manual_seed(cfg.seed)
    model = get_peft_model(model, make_lora_config(cfg.lora), autocast_adapter_dtype=True)
    if fused:
        fuse_lora(model)
    if cfg.gradient_checkpointing:
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tok


def _examples(tok, system_prompt: str, data: TrainingData, cfg: TrainConfig):
    skipped: Counter = Counter({"too_long": 0, "nothing_to_learn": 0})
    train = build_examples(tok, system_prompt, data.train, cfg.max_seq_len, skipped)
    held_out = build_examples(tok, system_prompt, data.validation, cfg.max_seq_len)[: cfg.max_eval_examples]
    if len(train) < cfg.min_train_examples:
        raise TrainingError(f"snapshot {data.snapshot_id} gives {len(train)} trainable examples from "
                            f"{len(data.train)} training conversations (skipped: {dict(skipped)}); "
                            f"min_train_examples={cfg.min_train_examples}. Ingest more data, or raise "
                            f"max_seq_len={cfg.max_seq_len} if conversations are too long")
    if not held_out:
        log.warning("the validation split (validation_fraction=%s of %d training conversations) gives no example "
                    "within max_seq_len=%d: no checkpoint selection or early stopping; the last step is kept",
                    cfg.validation_fraction, len(data.train) + len(data.validation), cfg.max_seq_len)
    if skipped["too_long"]:
        log.warning("skipped %d conversations longer than max_seq_len=%d even without their oldest turns",
                    skipped["too_long"], cfg.max_seq_len)
    return train, held_out, dict(skipped)


def _registered_for(settings: Settings, key: str | None) -> str | None:
    if not key:
        return None
    found = [v for v in registry.versions(settings) if (v.tags or {}).get(registry.Tag.AIRFLOW_RUN_ID) == key]
    return str(found[0].version) if found else None


def _prior_run(settings: Settings, key: str | None) -> str | None:
    """The MLflow run an earlier attempt of the same Airflow run started, if any."""
    import mlflow

    if not key:
        return None
    runs = mlflow.search_runs(experiment_names=[settings.experiment], output_format="list",
                              filter_string=f"tags.`{registry.Tag.AIRFLOW_RUN_ID}` = '{key}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def train(cfg: TrainConfig, settings: Settings | None = None, *, snapshot_id: str | None = None,
          register: bool = True, airflow_run_id: str | None = None) -> dict:
    """Train one adapter; returns run id, registered version and the headline metrics."""
    settings = settings or get_settings()
    configure(settings)
    if register and (done := _registered_for(settings, airflow_run_id)):
        log.info("version %s is already registered for Airflow run %s: nothing to do", done, airflow_run_id)
        return {"version": done, "airflow_run_id": airflow_run_id, "already_registered": True,
                **_run_summary(settings, done)}
    if (n := distributed.processes(settings)) > 1:
        resolve_base_model(settings)  # stored once, before the ranks read it
        return distributed.launch(n, cfg, settings, snapshot_id=snapshot_id, register=register,
                                  airflow_run_id=airflow_run_id)
    return train_here(cfg, settings, snapshot_id=snapshot_id, register=register, airflow_run_id=airflow_run_id)


def train_here(cfg: TrainConfig, settings: Settings, *, snapshot_id: str | None, register: bool,
               airflow_run_id: str | None, dp=None) -> dict:
    """Train in this process: alone, or as one rank `dp` of a data-parallel run (the ranks but 0 return {})."""
    dp = dp or distributed.SingleProcess()
    data = load_training_data(settings, snapshot_id, cfg.validation_fraction)
    base = resolve_base_model(settings)
    set_threads(cfg.num_threads)
    device, dtype = training_precision(cfg.precision)
    model, tok = build_lora_model(base, cfg, dtype)
    dp.seed(cfg.seed)
    train_ex, held_out, skipped = _examples(tok, settings.rendered_system_prompt(), data, cfg)
    manifest = build_manifest(cfg, snapshot_id=data.snapshot_id, dataset_hash=data.dataset_hash, base=base,
                              chat_template_sha=template_sha(tok), device=device.type,
                              dtype=str(dtype).removeprefix("torch."), code_version=code_version(),
                              system_prompt=settings.rendered_system_prompt(), processes=dp.world,
                              splits={**data.split_stats, "validation_examples": len(held_out)})
    trainer = Trainer(model, cfg, train_ex, held_out, tok.pad_token_id, device, dtype,
                      fail_after_step=settings.train_fail_after_step, dp=dp)
    dp.broadcast_parameters(trainer.params)
    if not dp.is_main:
        _resume(trainer, dp.share(None))
        trainer.run(on_step=lambda *_: None, on_eval=lambda *_: None, on_checkpoint=lambda _: None)
        return {}
    return _tracked_run(settings, cfg, data, base, manifest, trainer, tok, skipped, register=register,
                        airflow_run_id=airflow_run_id)


def _resume(trainer: Trainer, saved: dict | None) -> None:
    if saved:
        trainer.restore(saved)


def _tracked_run(settings, cfg, data, base, manifest, trainer, tok, skipped, *, register, airflow_run_id) -> dict:
    import mlflow

    client = registry.client(settings)
    prior = _prior_run(settings, airflow_run_id)
    with mlflow.start_run(run_id=prior, run_name=None if prior else f"lora-{data.snapshot_id}",
                          log_system_metrics=True) as run:
        run_id = run.info.run_id
        _resume(trainer, trainer.dp.share(checkpoint.load_latest(client, run_id) if prior else None))
        if not prior:
            _log_run_start(settings, cfg, data, base, manifest, trainer, skipped, airflow_run_id)
        state = trainer.run(
            on_step=lambda step, metrics: mlflow.log_metrics(metrics, step=step),
            on_eval=lambda step, loss: mlflow.log_metric("eval_loss", loss, step=step),
            on_checkpoint=lambda snap: checkpoint.save(client, run_id, snap))
        result = _finish(state, cfg, data, run_id, airflow_run_id)
        mlflow.log_metrics({k: v for k, v in result.items() if k in _FINAL_METRICS})
        mlflow.log_figure(loss_curve_png(state.history), "plots/loss_curve.png")
        if register:
            result["version"] = _log_and_register(settings, trainer.model, base, data, manifest, run_id,
                                                  airflow_run_id)
    log.info("trained: %s", result)
    return result


_FINAL_METRICS = ("final_train_loss", "final_eval_loss", "best_eval_loss", "best_step", "steps")


def _log_run_start(settings, cfg, data, base, manifest, trainer, skipped, airflow_run_id) -> None:
    import mlflow

    trainable = sum(p.numel() for p in trainer.params)
    mlflow.set_tags({"replyloop.stage": "train", registry.Tag.SNAPSHOT: data.snapshot_id,
                     registry.Tag.DATASET_HASH: data.dataset_hash, registry.Tag.BASE_MODEL_SHA: base.sha,
                     registry.Tag.CHAT_TEMPLATE_SHA: manifest["chat_template_sha"],
                     registry.Tag.CODE_VERSION: manifest["code_version"], "replyloop.device": manifest["device"],
                     **({registry.Tag.AIRFLOW_RUN_ID: airflow_run_id} if airflow_run_id else {})})
    mlflow.log_params({**cfg.flat(), "snapshot_id": data.snapshot_id, "train_examples": len(trainer.train),
                       "held_out_examples": len(trainer.held_out), "trainable_params": trainable,
                       **data.split_stats,
                       "device": manifest["device"], "dtype": manifest["dtype"], "processes": trainer.dp.world,
                       **{f"skipped_{k}": v for k, v in skipped.items()},
                       **{f"feedback_{k}": v for k, v in data.feedback_stats.items()}})
    mlflow.log_input(mlflow_dataset(data), context="training")
    mlflow.log_dict(manifest, MANIFEST)
    log.info("training LoRA r=%d on %d examples (%d held out) from snapshot %s on %s/%s; %d trainable parameters",
             cfg.lora.r, len(trainer.train), len(trainer.held_out), data.snapshot_id, manifest["device"],
             manifest["dtype"], trainable)


def _finish(state, cfg, data, run_id: str, airflow_run_id) -> dict:
    evals = state.history["eval_loss"]
    return {"run_id": run_id, "snapshot_id": data.snapshot_id, "airflow_run_id": airflow_run_id,
            "steps": state.step, "stopped_early": state.stopped_early, "resumed_from": state.resumed_from,
            "final_train_loss": state.history["train_loss"][-1][1] if state.history["train_loss"] else float("nan"),
            "initial_eval_loss": evals[0][1] if evals else float("nan"),
            "final_eval_loss": evals[-1][1] if evals else float("nan"),
            "best_eval_loss": state.best_loss if evals else float("nan"), "best_step": state.best_step,
            "version": None}


def _run_summary(settings: Settings, version: str) -> dict:
    mv = registry.client(settings).get_model_version(settings.model_name, version)
    run = registry.client(settings).get_run(mv.run_id)
    m = run.data.metrics
    return {"run_id": mv.run_id, "snapshot_id": run.data.tags.get(registry.Tag.SNAPSHOT),
            "final_train_loss": m.get("final_train_loss"), "final_eval_loss": m.get("final_eval_loss"),
            "initial_eval_loss": m.get("eval_loss"), "steps": m.get("steps")}


def _log_and_register(settings, model, base, data, manifest, run_id: str, airflow_run_id) -> str:
    import mlflow

    from replyloop.assistant import ReplyAssistant

    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / "adapter"
        model.save_pretrained(adapter)
        info = mlflow.pyfunc.log_model(
            name="assistant", python_model=ReplyAssistant(), artifacts={"adapter": str(adapter)},
            model_config={"base_model_sha": base.sha, "base_model": base.source,
                          "system_prompt": settings.rendered_system_prompt(), "max_new_tokens": settings.max_new_tokens,
                          "chat_template_sha": manifest["chat_template_sha"]},
            pip_requirements=_pip_requirements())
    tags = {registry.Tag.SNAPSHOT: data.snapshot_id, registry.Tag.DATASET_HASH: data.dataset_hash,
            registry.Tag.BASE_MODEL_SHA: base.sha, registry.Tag.CHAT_TEMPLATE_SHA: manifest["chat_template_sha"],
            registry.Tag.CODE_VERSION: manifest["code_version"]}
    return registry.register_version(
        settings, model_uri=info.model_uri, run_id=run_id, tags=tags, idempotency_key=airflow_run_id,
        description=f"LoRA adapter on base {base.sha[:16]} trained on snapshot {data.snapshot_id}")


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "torch", "transformers", "peft", "pydantic-settings")]


def train_like(settings: Settings, version: str, *, register: bool = True) -> dict:
    """Re-run the manifest of a registered version: same snapshot, config, seed, system prompt and base."""
    from replyloop.training.config import config_from_dict
    from replyloop.training.manifest import manifest_of_version, package_versions

    manifest = manifest_of_version(settings, version)
    base = resolve_base_model(settings)
    if base.sha != manifest["base_model_sha"]:
        raise TrainingError(f"version {version} was trained on base model {manifest['base_model_sha'][:16]}, but "
                            f"REPLYLOOP_BASE_MODEL={settings.base_model!r} resolves to {base.sha[:16]}")
    now = package_versions()
    changed = {k: f"{v} -> {now.get(k)}" for k, v in manifest["packages"].items() if now.get(k) != v}
    if changed:
        log.warning("package versions differ from version %s's run (weights may differ slightly): %s", version, changed)
    like = settings.model_copy(update={"system_prompt": manifest["system_prompt"].replace("{", "{{").replace("}", "}}")})
    return train(config_from_dict(manifest["train_config"]), like, snapshot_id=manifest["snapshot_id"],
                 register=register)
