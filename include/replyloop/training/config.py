"""Training configuration: one dataclass per concern, defaults for a demo-sized CPU run.

`resources/train.yaml` is the committed run description; DAG Params and CLI flags override single fields.
`make_lora_config` is the only place a peft `LoraConfig` is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from replyloop.resources import ROOT as RESOURCES


@dataclass
class LoraSettings:
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainConfig:
    max_steps: int = field(default=40, metadata={"help": "optimizer steps"})
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 2e-4
    warmup_steps: int = 4
    weight_decay: float = 0.0
    max_seq_len: int = 256
    eval_every: int = 10
    max_eval_examples: int = 32
    seed: int = 17
    lora: LoraSettings = field(default_factory=LoraSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        out = {k: v for k, v in self.to_dict().items() if k != "lora"}
        out.update({f"lora_{k}": (",".join(v) if isinstance(v, list) else v) for k, v in self.to_dict()["lora"].items()})
        return out


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
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**data, lora=LoraSettings(**lora))


def make_lora_config(settings: LoraSettings):
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=settings.r, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=list(settings.target_modules), bias="none")
