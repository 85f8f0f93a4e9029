"""Training configuration: one dataclass per concern, defaults for a demo-sized CPU run.

`resources/train.yaml` is the committed run description; DAG Params and CLI flags override single fields.
Every value is checked when the config is built (`TrainConfigError` names the setting); the target modules
are checked against the base model when the adapter is attached (`check_target_modules`).
`make_lora_config` is the only place a peft `LoraConfig` is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from replyloop.resources import ROOT as RESOURCES

PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("cosine", "linear")


class TrainConfigError(ValueError):
    """A training setting is impossible; the message names it and the value."""


@dataclass
class LoraSettings:
    r: int = field(default=8, metadata={"help": "LoRA rank (>= 1)"})
    alpha: float = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r), > 0"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input, in [0, 1) (0: the fused LoRA path "
                                                         "runs q/k/v and gate/up as one matmul each)"})
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self):
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        _check(isinstance(self.r, int) and self.r >= 1, "lora.r", self.r, "must be an integer >= 1")
        _check(self.alpha > 0, "lora.alpha", self.alpha, "must be > 0")
        _check(0 <= self.dropout < 1, "lora.dropout", self.dropout, "must be in [0, 1)")
        _check(bool(self.target_modules), "lora.target_modules", self.target_modules, "must name at least one module")


@dataclass
class TrainConfig:
    max_steps: int = field(default=40, metadata={"help": "optimizer steps (fewer when early stopping ends it)"})
    batch_size: int = 4
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    learning_rate: float = 2e-4
    warmup_steps: int = 4
    lr_schedule: str = field(default="cosine", metadata={"help": "decay after the warm-up, to 0 at max_steps: cosine "
                                                                 "| linear (transformers Trainer's default)"})
    weight_decay: float = 0.0
    max_seq_len: int = field(default=256, metadata={"help": "tokens per example; oldest turns dropped beyond"})
    eval_every: int = 10
    max_eval_examples: int = field(default=32, metadata={"help": "validation examples read at each evaluation"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of the train split's conversations "
                                                                      "(a hash of their id) held out for checkpoint "
                                                                      "selection; never the gate's held-out split"})
    early_stopping_patience: int = field(default=3, metadata={"help": "evals without a better held-out loss "
                                                                      "before stopping; 0 = never stop early"})
    checkpoint_every: int = field(default=10, metadata={"help": "optimizer steps between resumable checkpoints"})
    min_train_examples: int = field(default=4, metadata={"help": "fewer trainable examples stop the run"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 where supported) | fp32 | bf16"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations: less memory"})
    num_threads: int = field(default=0, metadata={"help": "CPU threads for torch; 0 = torch's default (OMP_NUM_THREADS, "
                                                          "else one per core). On a worker whose cores are busy "
                                                          "with other jobs, set it to the cores that are free"})
    seed: int = 17
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "grad_accum", "max_seq_len", "eval_every", "checkpoint_every",
                     "min_train_examples"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, value, "must be an integer >= 1")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(0 <= self.validation_fraction < 1, "validation_fraction", self.validation_fraction, "must be in [0, 1)")
        _check(0 <= self.warmup_steps, "warmup_steps", self.warmup_steps, "must be >= 0")
        _check(isinstance(self.num_threads, int) and self.num_threads >= 0, "num_threads", self.num_threads,
               "must be an integer >= 0")
        _check(self.early_stopping_patience >= 0, "early_stopping_patience", self.early_stopping_patience,
               "must be >= 0")
        _check(self.lr_schedule in SCHEDULES, "lr_schedule", self.lr_schedule, f"must be one of {', '.join(SCHEDULES)}")
        _check(self.precision in PRECISIONS, "precision", self.precision, f"must be one of {', '.join(PRECISIONS)}")
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        out = {k: v for k, v in self.to_dict().items() if k != "lora"}
        out.update({f"lora_{k}": (",".join(v) if isinstance(v, list) else v) for k, v in self.to_dict()["lora"].items()})
        return out


def _check(ok: bool, name: str, value, rule: str) -> None:
    if not ok:
        raise TrainConfigError(f"training setting {name}={value!r} {rule}")


def load_train_config(path: Path | None = None, **overrides) -> TrainConfig:
    """Defaults <- YAML file (the committed one unless given) <- non-None overrides (`lora_r=16` sets lora.r)."""
    data = yaml.safe_load(Path(path or RESOURCES / "train.yaml").read_text()) or {}
    lora = data.pop("lora", {}) or {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key.startswith("lora_"):
            lora[key.removeprefix("lora_")] = value
        else:
            data[key] = value
    return config_from_dict({**data, "lora": lora})


def config_from_dict(data: dict) -> TrainConfig:
    """A TrainConfig from plain data (YAML, a run manifest), refusing unknown settings by name."""
    data = dict(data)
    lora = data.pop("lora", {}) or {}
    unknown = set(data) - {f.name for f in dataclasses.fields(TrainConfig)}
    unknown |= {f"lora_{k}" for k in set(lora) - {f.name for f in dataclasses.fields(LoraSettings)}}
    if unknown:
        raise TrainConfigError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    try:
        return TrainConfig(**data, lora=LoraSettings(**lora))
    except TypeError as exc:  # a value of the wrong type, e.g. a string where a number belongs
        raise TrainConfigError(f"training settings: {exc}") from exc


def check_target_modules(model, lora: LoraSettings) -> None:
    """Every target module must name linear layers of the base model."""
    import torch

    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = [t for t in lora.target_modules if t not in linear]
    if missing:
        raise TrainConfigError(f"training setting lora.target_modules: {', '.join(missing)} not a linear layer of "
                               f"the base model (it has: {', '.join(sorted(linear))})")


def make_lora_config(settings: LoraSettings):
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=settings.r, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=list(settings.target_modules), bias="none")
