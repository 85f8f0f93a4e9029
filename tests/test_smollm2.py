"""The real base model, end to end: SmolLM2-135M-Instruct from the shipped GGUF, LoRA, registry, reply."""

from __future__ import annotations

from datetime import date

import pytest
from conftest import module_home


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    with module_home(tmp_path_factory, "smol", BASE_MODEL=None, MAX_NEW_TOKENS="24") as settings:
        yield settings


def test_base_model_is_converted_once_and_replies(smol):
    from replyloop.modeling import ReplyGenerator, load_base, resolve_base_model, smollm2_gguf

    base = resolve_base_model(smol)
    assert base.source == "smollm2" and len(base.sha) == 64
    assert (base.path / "model.safetensors").stat().st_size > 500_000_000, "dequantised fp32 weights"
    mtime = (base.path / "model.safetensors").stat().st_mtime
    assert resolve_base_model(smol).path == base.path
    assert (base.path / "model.safetensors").stat().st_mtime == mtime, "the conversion is cached"
    assert smollm2_gguf().suffix == ".gguf"
    model, tok = load_base(base)
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    reply = ReplyGenerator(model, tok, system_prompt=smol.rendered_system_prompt(), max_new_tokens=24).reply(
        ["Where is my order? It was due yesterday."])[0]
    assert len(reply.split()) >= 3, reply


def test_lora_on_smollm2_registers_a_version_that_replies(smol):
    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.registry import load_version
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    lake = open_lake(smol.lake)
    generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=1, conversations_per_day=30)
    run_ingest(smol)
    result = train(load_train_config(max_steps=2, batch_size=2, max_seq_len=96, eval_every=2, max_eval_examples=2),
                   smol)
    assert result["version"] == "1"
    assert result["final_train_loss"] < 10, "a pretrained model starts far below random-init loss"
    generator = load_version(smol, result["version"])
    [reply, follow_up] = generator.reply([
        "Hi, my parcel has not arrived yet",
        [{"role": "customer", "text": "Hi, my parcel has not arrived yet"},
         {"role": "agent", "text": "Sorry to hear that! Could you send us your order number by DM?"},
         {"role": "customer", "text": "Sent it. Any news?"}]])
    assert reply.strip() and follow_up.strip(), "the registered adapter + stored base answer both"
    adapter_files = list((smol.artifact_root).rglob("adapter_model.safetensors"))
    assert adapter_files and all(f.stat().st_size < 20_000_000 for f in adapter_files), "versions are adapter-only"
    assert not list(smol.artifact_root.rglob("model.safetensors")), "no full base weights in the artifact store"
