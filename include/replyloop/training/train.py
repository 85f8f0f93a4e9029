"""LoRA fine-tuning of the base model on the current curated snapshot, tracked in MLflow.

    resolve config -> load snapshot -> build examples -> build LoRA model -> loop -> save adapter
                   -> log (params, curves, lineage, config, adapter) -> register a version

The loop is plain PyTorch (AdamW, linear warm-up then cosine decay, gradient accumulation), on CUDA
with bf16 autocast where present and fp32 on CPU otherwise.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
import time
from pathlib import Path

import yaml

from replyloop.ingest.pipeline import read_manifest, read_snapshot
from replyloop.lake import lake_for
from replyloop.modeling import device_and_dtype, load_base, resolve_base_model
from replyloop.reports import loss_curve_png
from replyloop.settings import Settings, get_settings
from replyloop.tracking import code_version, configure
from replyloop.training.config import TrainConfig, make_lora_config
from replyloop.training.examples import build_examples, collate, conversations

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    pass


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_steps + 1)
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def length_grouped_order(lengths: list[int], batch_size: int, rng: random.Random) -> list[int]:
    """One epoch of indices where each batch holds examples of similar length (less padding, faster CPU
    steps), while the order of the batches stays random."""
    idx = rng.sample(range(len(lengths)), len(lengths))
    window = batch_size * 16
    batches = []
    for i in range(0, len(idx), window):
        chunk = sorted(idx[i : i + window], key=lambda j: lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [j for b in batches for j in b]


def mean_loss(model, examples, pad_id: int, batch_size: int) -> float:
    """Token-weighted mean loss over examples (teacher forcing)."""
    import torch

    total, tokens = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(model.device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            if n == 0:
                continue
            total += float(model(**batch).loss) * n
            tokens += n
    model.train()
    return total / max(tokens, 1)


def load_splits(settings: Settings, snapshot_id: str | None):
    lake = lake_for(settings)
    snap_id, messages, feedback = read_snapshot(lake, snapshot_id)
    if snap_id is None:
        raise TrainingError(f"no curated snapshot in {lake.url('curated/conversations/')}: run ingestion first")
    train_convs, fb_stats = conversations(messages, feedback, "train")
    eval_convs, _ = conversations(messages, feedback, "eval")
    return snap_id, lake, train_convs, eval_convs, fb_stats


def build_lora_model(settings: Settings, cfg: TrainConfig):
    from peft import get_peft_model

    base = resolve_base_model(settings)
    model, tok = load_base(base, for_training=True)
    model = get_peft_model(model, make_lora_config(cfg.lora))
    return base, model, tok


def train(cfg: TrainConfig, settings: Settings | None = None, *, snapshot_id: str | None = None,
          register: bool = True) -> dict:
    """Train one adapter; returns run id, registered version and the headline metrics."""
    import mlflow
    import torch

    settings = settings or get_settings()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    snap_id, lake, train_convs, eval_convs, fb_stats = load_splits(settings, snapshot_id)
    base, model, tok = build_lora_model(settings, cfg)
    system_prompt = settings.rendered_system_prompt()
    train_ex, _ = build_examples(tok, system_prompt, train_convs, cfg.max_seq_len)
    eval_ex = build_examples(tok, system_prompt, eval_convs, cfg.max_seq_len)[0][: cfg.max_eval_examples]
    if not train_ex:
        raise TrainingError(f"snapshot {snap_id} has no trainable conversations (train split is empty)")
    device, dtype = device_and_dtype()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("training LoRA r=%d on %d examples (%d held out) from snapshot %s on %s; %d of %d parameters trainable",
             cfg.lora.r, len(train_ex), len(eval_ex), snap_id, device, trainable, total)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    autocast = torch.autocast("cuda", dtype=dtype) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    configure(settings)
    manifest = read_manifest(lake, snap_id) or {}
    history: dict[str, list[tuple[int, float]]] = {"train_loss": [], "eval_loss": []}
    with mlflow.start_run(run_name=f"lora-{snap_id}") as run:
        mlflow.set_tags({"replyloop.stage": "train", "replyloop.snapshot_id": snap_id,
                         "replyloop.base_model_sha": base.sha, "replyloop.base_model": base.source,
                         "replyloop.code_version": code_version(), "replyloop.device": str(device)})
        mlflow.log_params({**cfg.flat(), "snapshot_id": snap_id, "train_examples": len(train_ex),
                           "eval_examples": len(eval_ex), "trainable_params": trainable, "device": str(device),
                           "dtype": str(dtype).removeprefix("torch."), **{f"feedback_{k}": v for k, v in fb_stats.items()}})
        mlflow.log_input(mlflow.data.from_pandas(
            _lineage_frame(train_convs), source=lake.url(f"curated/conversations/{snap_id}/"),
            name=f"snapshot-{snap_id}"), context="training")
        mlflow.log_dict(cfg.to_dict(), "config/train.yaml")
        mlflow.log_dict(manifest, "data/manifest.json")

        eval_loss0 = mean_loss(model, eval_ex, tok.pad_token_id, cfg.batch_size) if eval_ex else float("nan")
        history["eval_loss"].append((0, eval_loss0))
        mlflow.log_metric("eval_loss", eval_loss0, step=0)
        model.train()
        order: list[int] = []
        lengths = [len(ex.input_ids) for ex in train_ex]
        started = time.monotonic()
        for step in range(cfg.max_steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            step_loss = 0.0
            for _ in range(cfg.grad_accum):
                if len(order) < cfg.batch_size:
                    order += length_grouped_order(lengths, cfg.batch_size, rng)
                idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
                batch = {k: v.to(device) for k, v in collate([train_ex[i] for i in idx], tok.pad_token_id).items()}
                with autocast:
                    loss = model(**batch).loss / cfg.grad_accum
                loss.backward()
                step_loss += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            history["train_loss"].append((step + 1, step_loss))
            mlflow.log_metrics({"train_loss": step_loss, "lr": lr_at(step, cfg)}, step=step + 1)
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
                el = mean_loss(model, eval_ex, tok.pad_token_id, cfg.batch_size) if eval_ex else float("nan")
                history["eval_loss"].append((step + 1, el))
                mlflow.log_metric("eval_loss", el, step=step + 1)
                rate = (step + 1) / (time.monotonic() - started)
                log.info("step %d/%d train_loss=%.3f eval_loss=%.3f (%.2f steps/s)", step + 1, cfg.max_steps,
                         step_loss, el, rate)
        secs = time.monotonic() - started
        final_eval = history["eval_loss"][-1][1]
        mlflow.log_metrics({"train_seconds": secs, "final_train_loss": history["train_loss"][-1][1],
                            "final_eval_loss": final_eval, "eval_perplexity": math.exp(min(final_eval, 50))})
        mlflow.log_figure(loss_curve_png(history), "plots/loss_curve.png")

        result = {"run_id": run.info.run_id, "snapshot_id": snap_id, "train_examples": len(train_ex),
                  "final_train_loss": history["train_loss"][-1][1], "final_eval_loss": final_eval,
                  "initial_eval_loss": eval_loss0, "train_seconds": round(secs, 1), "version": None}
        with tempfile.TemporaryDirectory() as tmp:
            adapter = Path(tmp) / "adapter"
            model.save_pretrained(adapter)
            (adapter / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
            if register:
                result["version"] = _log_and_register(settings, adapter, base, snap_id, run.info.run_id)
    log.info("trained: %s", result)
    return result


def _lineage_frame(convs: list[dict]):
    import pandas as pd

    return pd.DataFrame({"conversation_id": [c["conversation_id"] for c in convs],
                         "turns": [len(c["turns"]) for c in convs]})


def _log_and_register(settings: Settings, adapter: Path, base, snap_id: str, run_id: str) -> str:
    import mlflow

    from replyloop.assistant import ReplyAssistant
    from replyloop.registry import client

    info = mlflow.pyfunc.log_model(
        name="assistant",
        python_model=ReplyAssistant(),
        artifacts={"adapter": str(adapter)},
        model_config={"base_model_sha": base.sha, "base_model": base.source,
                      "system_prompt": settings.rendered_system_prompt(), "max_new_tokens": settings.max_new_tokens},
        pip_requirements=_pip_requirements(),
    )
    mv = mlflow.register_model(info.model_uri, settings.model_name,
                               tags={"replyloop.snapshot_id": snap_id, "replyloop.base_model_sha": base.sha,
                                     "replyloop.code_version": code_version(), "replyloop.run_id": run_id})
    c = client(settings)
    c.update_model_version(settings.model_name, mv.version,
                           description=f"LoRA adapter on base {base.sha[:16]} trained on snapshot {snap_id}")
    log.info("registered %s version %s (%s)", settings.model_name, mv.version, info.model_uri)
    return str(mv.version)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "torch", "transformers", "peft", "pydantic-settings")]
