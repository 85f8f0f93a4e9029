"""Training fails early and clearly when the base model cannot be found."""

from __future__ import annotations

import pytest

from replyloop.settings import get_settings


def test_missing_base_model_fails_with_the_setting_named(settings, demo_lake, monkeypatch):
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.modeling import BaseModelError
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    run_ingest(settings, lake=demo_lake)
    monkeypatch.setenv("REPLYLOOP_BASE_MODEL", "/nowhere/model")
    get_settings.cache_clear()
    with pytest.raises(BaseModelError, match=r"REPLYLOOP_BASE_MODEL='/nowhere/model': no such folder"):
        train(load_train_config(max_steps=1), get_settings())
    assert demo_lake.exists("curated/conversations/CURRENT"), "the curated snapshot is untouched"
