from __future__ import annotations

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
