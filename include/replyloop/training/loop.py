"""The training loop: AdamW on the LoRA weights, warm-up + cosine (or linear) decay, gradient accumulation, bf16
autocast where the device has it, held-out evaluation with early stopping that keeps the best adapter,
and checkpoints a retry resumes from.

The loop knows nothing of MLflow: `on_step`, `on_eval` and `on_checkpoint` callbacks report to it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from replyloop.training.batching import collate, micro_batches, summed_loss, supervised_tokens
from replyloop.training.checkpoint import load_trainable, trainable_state
from replyloop.training.config import TrainConfig
from replyloop.training.distributed import SingleProcess
from replyloop.training.examples import Example
from replyloop.training.progress import Progress

log = logging.getLogger(__name__)


class InjectedFailure(RuntimeError):
    """Raised by the REPLYLOOP_TRAIN_FAIL_AFTER_STEP testing hook, as if the task had been killed."""


@dataclass
class LoopState:
    step: int = 0
    history: dict = field(default_factory=lambda: {"train_loss": [], "eval_loss": []})
    best_loss: float = math.inf
    best_step: int = 0
    best_trainable: dict | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None


def autocast(device, dtype):
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def held_out_loss(model, examples: list[Example], pad_id: int, batch_size: int, device=None, dtype=None) -> float:
    """Token-weighted mean loss over examples (teacher forcing, labelled positions only)."""
    import torch

    device = device or model.device
    dtype = dtype or torch.float32
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, dtype):
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
            n = supervised_tokens(batch)
            if n:
                total += float(summed_loss(model, batch))
                tokens += n
    model.train(was_training)
    return total / tokens if tokens else float("nan")


class Trainer:
    def __init__(self, model, cfg: TrainConfig, train: list[Example], held_out: list[Example], pad_id: int,
                 device, dtype, *, fail_after_step: int | None = None, dp=None):
        import torch
        from transformers import get_scheduler

        self.model, self.cfg, self.train, self.held_out = model, cfg, train, held_out
        self.pad_id, self.device, self.dtype, self.fail_after_step = pad_id, device, dtype, fail_after_step
        self.dp = dp or SingleProcess()  # data parallelism: see training/distributed.py
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = get_scheduler(cfg.lr_schedule, self.optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=cfg.max_steps)  # "cosine" | "linear", with warm-up
        self.state = LoopState()

    # --- checkpoints -------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        import torch

        s = self.state
        return {"step": s.step, "trainable": trainable_state(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "history": s.history, "best_loss": s.best_loss, "best_step": s.best_step,
                "best_trainable": s.best_trainable, "bad_evals": s.bad_evals, "stopped_early": s.stopped_early,
                "rank_rng": self.dp.rng_states()}

    def restore(self, saved: dict) -> None:
        import torch

        load_trainable(self.model, saved["trainable"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        self.dp.restore_rng(saved)
        self.state = LoopState(step=saved["step"], history=saved["history"], best_loss=saved["best_loss"],
                               best_step=saved["best_step"], best_trainable=saved["best_trainable"],
                               bad_evals=saved["bad_evals"], stopped_early=saved["stopped_early"],
                               resumed_from=saved["step"])

    # --- the loop ----------------------------------------------------------------------------------
    def run(self, on_step: Callable, on_eval: Callable, on_checkpoint: Callable) -> LoopState:
        cfg, s = self.cfg, self.state
        if s.step == 0 and not s.history["eval_loss"]:
            self.evaluate(on_eval)
        stream = micro_batches([len(e.input_ids) for e in self.train], cfg.batch_size, cfg.seed,
                               skip=s.step * cfg.grad_accum)
        progress = Progress(cfg.max_steps, s.step)
        self.model.train()
        while s.step < cfg.max_steps and not s.stopped_early:
            loss, tokens = self.optimizer_step([next(stream) for _ in range(cfg.grad_accum)])
            s.step += 1
            s.history["train_loss"].append((s.step, loss))
            lr = self.scheduler.get_last_lr()[0]
            on_step(s.step, {"train_loss": loss, "lr": lr, "tokens_per_s": progress.step(s.step, loss, lr, tokens)})
            if s.step % cfg.eval_every == 0 or s.step == cfg.max_steps:
                self.evaluate(on_eval)
            if s.step % cfg.checkpoint_every == 0 or s.step == cfg.max_steps or s.stopped_early:
                on_checkpoint(self.snapshot())
            if self.fail_after_step is not None and s.step >= self.fail_after_step:
                raise InjectedFailure(f"REPLYLOOP_TRAIN_FAIL_AFTER_STEP={self.fail_after_step}: failing after step "
                                      f"{s.step} (testing hook)")
        if s.best_trainable is not None:
            load_trainable(self.model, s.best_trainable)
        return s

    def optimizer_step(self, index_batches: list[list[int]]) -> tuple[float, int]:
        import torch

        batches = [{k: v.to(self.device) for k, v in collate([self.train[i] for i in idx], self.pad_id).items()}
                   for idx in self.dp.shard(index_batches)]
        tokens = self.dp.sum(sum(supervised_tokens(b) for b in batches))  # of the global batch
        total = 0.0
        for batch in batches:
            with autocast(self.device, self.dtype):
                loss = summed_loss(self.model, batch) / max(tokens, 1)
            loss.backward()
            total += loss.item()
        self.dp.sum_gradients(self.params)
        total = self.dp.sum(total)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, tokens

    def evaluate(self, on_eval: Callable) -> None:
        s = self.state
        if not self.held_out:
            return
        loss = self.dp.mean_over_shards(self.held_out, lambda part: held_out_loss(
            self.model, part, self.pad_id, self.cfg.batch_size, self.device, self.dtype))
        s.history["eval_loss"].append((s.step, loss))
        on_eval(s.step, loss)
        if loss < s.best_loss - 1e-4:
            s.best_loss, s.best_step, s.best_trainable, s.bad_evals = loss, s.step, trainable_state(self.model), 0
        else:
            s.bad_evals += 1
            if self.cfg.early_stopping_patience and s.bad_evals >= self.cfg.early_stopping_patience:
                s.stopped_early = True
                log.info("early stop at step %d: held-out loss %.4f has not beaten %.4f (step %d) for %d evaluations",
                         s.step, loss, s.best_loss, s.best_step, s.bad_evals)
