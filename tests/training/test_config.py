from __future__ import annotations

import math

import pytest

from replyloop.training.config import load_train_config, make_lora_config


def test_committed_config_and_overrides(tmp_path):
    cfg = load_train_config()
    assert cfg.max_steps > 0 and cfg.lora.r > 0
    tuned = load_train_config(max_steps=3, lora_r=4, learning_rate=None)
    assert (tuned.max_steps, tuned.lora.r, tuned.learning_rate) == (3, 4, cfg.learning_rate)
    lora = make_lora_config(tuned.lora)
    assert lora.r == 4 and set(lora.target_modules) == set(cfg.lora.target_modules)
    assert tuned.flat()["lora_target_modules"] == ",".join(cfg.lora.target_modules)


def test_unknown_setting_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("max_stepz: 3\n")
    with pytest.raises(ValueError, match="unknown training setting\\(s\\): max_stepz"):
        load_train_config(path)


@pytest.mark.parametrize("overrides, message", [
    ({"lora_r": 0}, r"lora.r=0 must be an integer >= 1"),
    ({"lora_alpha": 0}, r"lora.alpha=0 must be > 0"),
    ({"lora_dropout": 1.0}, r"lora.dropout=1.0 must be in \[0, 1\)"),
    ({"lora_target_modules": " , "}, r"lora.target_modules=\[\] must name at least one module"),
    ({"precision": "fp8"}, r"precision='fp8' must be one of auto, fp32, bf16"),
    ({"num_threads": -1}, r"num_threads=-1 must be an integer >= 0"),
    ({"grad_accum": 0}, r"grad_accum=0 must be an integer >= 1"),
    ({"lr_schedule": "step"}, r"lr_schedule='step' must be one of cosine, linear"),
])
def test_impossible_settings_are_named(overrides, message):
    from replyloop.training.config import TrainConfigError

    with pytest.raises(TrainConfigError, match=message):
        load_train_config(**overrides)


def test_cli_names_the_impossible_setting(settings):
    from click.testing import CliRunner

    from replyloop.cli import main

    out = CliRunner().invoke(main, ["train", "--lora-r", "0"])
    assert out.exit_code == 1 and "lora.r=0 must be an integer >= 1" in out.output


def test_target_modules_from_a_param_string():
    cfg = load_train_config(lora_target_modules="q_proj, v_proj")
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize("schedule, expected", [
    ("cosine", [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0]),
    ("linear", [1.0, 0.75, 0.5, 0.25, 0.0]),
])
def test_lr_schedule_decays_as_named(schedule, expected):
    """Without warm-up, the learning rate of step k (from 0) over 4 steps: cosine or linear to 0."""
    import torch

    from replyloop.training.loop import Trainer

    cfg = load_train_config(max_steps=4, warmup_steps=0, learning_rate=1.0, lr_schedule=schedule)
    trainer = Trainer(torch.nn.Linear(2, 2), cfg, [], [], 0, torch.device("cpu"), torch.float32)
    lrs = []
    for _ in range(5):
        lrs.append(trainer.scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs == pytest.approx(expected, abs=1e-9)
