"""Fixtures for the API tests: the tiny loop's champion served by a real app, and an API key."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from replyloop import registry
from replyloop.serving.main import create_app
from replyloop.serving.security import create_key

WEBHOOK_SECRET = "whsec-0123456789abcdef"


def wait_ready(client: TestClient, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout}s: {r.json()}")


def _register_adapter(settings, base, seed: int, folder) -> str:
    """A registered version as training registers one (pyfunc with a LoRA adapter), with random LoRA weights."""
    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from replyloop.assistant import ReplyAssistant
    from replyloop.tracking import configure

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base.path)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(folder)
    configure(settings)
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="assistant", python_model=ReplyAssistant(), artifacts={"adapter": str(folder)},
                                       model_config={"base_model_sha": base.sha, "base_model": base.source,
                                                     "system_prompt": settings.rendered_system_prompt(),
                                                     "max_new_tokens": settings.max_new_tokens},
                                       pip_requirements=["replyloop"])
    return registry.register_version(settings, model_uri=info.model_uri, run_id=run.info.run_id,
                                     tags={registry.Tag.BASE_MODEL_SHA: base.sha}, description=f"test adapter {seed}")


@pytest.fixture(scope="session")
def served_registry(tmp_path_factory, tiny_model_dir):
    """A registry with two versions of the tiny model (v1 champion), in a home of its own; no training code."""
    from replyloop.lake import open_lake
    from replyloop.modeling import resolve_base_model
    from replyloop.settings import get_settings

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("serving")
    mp.setenv("REPLYLOOP_HOME", str(root / "home"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("REPLYLOOP_BASE_MODEL", str(tiny_model_dir))
    mp.setenv("REPLYLOOP_MAX_NEW_TOKENS", "8")
    get_settings.cache_clear()
    settings = get_settings()
    base = resolve_base_model(settings)
    versions = [_register_adapter(settings, base, seed, root / f"v{seed}" / "adapter") for seed in (1, 2)]
    registry.promote(settings, versions[0], reason="test", by="test", force=True)
    yield {"settings": settings, "versions": versions, "lake": open_lake(settings.lake)}
    mp.undo()
    import os

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def serve_settings(served_registry):
    return served_registry["settings"].model_copy(update={"alias_poll_seconds": 0.2,
                                                          "webhook_secrets": f"twitter:{WEBHOOK_SECRET}"})


@pytest.fixture(scope="module")
def api_key(serve_settings) -> str:
    return create_key(serve_settings, f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def client(serve_settings, api_key):
    with TestClient(create_app(serve_settings), raise_server_exceptions=False) as c:
        c.headers["X-API-Key"] = api_key
        wait_ready(c)
        yield c
