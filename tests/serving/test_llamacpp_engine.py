"""The llama.cpp engine (a GGUF of the version, the version's own decoding rule) answers like the reference."""

from __future__ import annotations

import sys

import pytest

from replyloop import registry
from replyloop.chat import prompt_ids
from replyloop.serving import llamacpp_engine
from replyloop.serving.engine import EngineError, HFEngine, load_base_engine, load_engine, version_config
from replyloop.serving.gguf_llama import write_lora, write_model
from replyloop.serving.llamacpp_engine import LlamaCppEngine, LlamaCppError, convert

from .test_engine import golden_conversations


@pytest.fixture(scope="module")
def version(served_registry):
    settings = served_registry["settings"]
    v = served_registry["versions"][0]
    return {"settings": settings, "version": v, "files": registry.download_version(settings, v),
            "generator": registry.load_version(settings, v)}


def _engine(version, weights: str = "f32") -> LlamaCppEngine:
    files = version["files"]
    paths = convert(version["settings"], files.base_model_sha, files.adapter_dir, version["generator"], weights,
                    label="test")
    return LlamaCppEngine(version["generator"], paths["model"], lora_path=paths["lora"], threads=1)


def test_float32_gguf_gives_the_reference_greedy_replies(version):
    """f32 weights, f32 keys and values: llama.cpp's logits differ from torch's by rounding only, so the
    greedy tokens of the same decoding rule are the reference's on (almost) every golden prompt."""
    convs = golden_conversations(24)
    reference = HFEngine(version["generator"]).generate(convs)
    fast = _engine(version).generate(convs)
    same = sum(a.text == b.text for a, b in zip(reference, fast, strict=True))
    assert same >= 23, f"{same}/{len(convs)} identical greedy replies"


def test_a_reply_is_the_same_alone_and_in_a_batch(version):
    engine = _engine(version)
    convs = golden_conversations(8)
    assert [engine.generate([c])[0] for c in convs] == engine.generate(convs)


def test_the_decoding_rule_is_the_versions_own(version):
    """The engine decodes with the generator's rule (penalty, n-gram block with its end of turn exempt, no
    '@'; `modeling.rule_scores`, equal to the processors in tests/test_modeling.py), not llama.cpp's sampler."""
    engine = _engine(version)
    assert engine.end_of_turn == version["generator"].end_of_turn_ids()
    assert engine.suppressed == version["generator"].suppressed and engine.suppressed
    assert engine.prefix == prompt_ids(version["generator"].tok, [{"role": "customer", "text": "x"}],
                                       version["generator"].system_prompt, 1024)[: len(engine.prefix)]


def test_unmerged_lora_adapter_gguf_equals_the_merged_weights(version, tmp_path):
    """The adapter written for llama.cpp (B rows of q reordered for its rotary layout) on the base's GGUF
    gives the tokens of the merged GGUF."""
    from peft import PeftModel

    gen = version["generator"]
    base = PeftModel.from_pretrained(_fresh_base(version), version["files"].adapter_dir).unload()
    write_model(base, gen.tok, tmp_path / "base.gguf", "f32")
    write_lora(version["files"].adapter_dir, base.config, tmp_path / "lora.gguf")
    convs = golden_conversations(12)
    unmerged = LlamaCppEngine(gen, tmp_path / "base.gguf", lora_path=tmp_path / "lora.gguf", threads=1).generate(convs)
    merged = _engine(version).generate(convs)
    assert sum(a == b for a, b in zip(unmerged, merged, strict=True)) >= 11


def _fresh_base(version):
    from replyloop.modeling import base_model_by_hash, load_base

    return load_base(base_model_by_hash(version["settings"], version["files"].base_model_sha))[0]


def test_conversion_is_cached_by_content(version, served_registry):
    settings, files = version["settings"], version["files"]
    first = convert(settings, files.base_model_sha, files.adapter_dir, version["generator"], "q8_0", label="t")
    stamp = first["model"].stat().st_mtime_ns
    again = convert(settings, files.base_model_sha, files.adapter_dir, version["generator"], "q8_0", label="t")
    assert again == first and again["model"].stat().st_mtime_ns == stamp
    other = registry.download_version(settings, served_registry["versions"][1])
    assert convert(settings, other.base_model_sha, other.adapter_dir, version["generator"], "q8_0",
                   label="t")["model"] != first["model"]


def test_settings_choose_llamacpp_and_auto_picks_it_for_a_llama(version):
    settings = version["settings"]
    assert load_engine(settings.model_copy(update={"serve_engine": "llamacpp"}), version["version"]).name == "llamacpp"
    assert load_engine(settings.model_copy(update={"serve_engine": "auto"}), version["version"]).name == "llamacpp"
    base = load_base_engine(settings.model_copy(update={"serve_engine": "llamacpp"}), version["files"].base_model_sha,
                            version_config(version["files"]))
    assert base.name == "llamacpp" and base.generate([[{"role": "customer", "text": "hi"}]])[0].tokens > 0


def test_without_llama_cpp_the_setting_errs_and_auto_falls_back(version, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    settings = version["settings"]
    with pytest.raises(EngineError, match="llama-cpp-python is not installed"):
        load_engine(settings.model_copy(update={"serve_engine": "llamacpp"}), version["version"])
    assert load_engine(settings.model_copy(update={"serve_engine": "auto"}), version["version"]).name == "torch"


def test_a_non_llama_model_is_refused_clearly_and_auto_keeps_torch(version):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from replyloop.modeling import ReplyGenerator
    from replyloop.serving.engine import _by_choice

    tok = version["generator"].tok
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=256))
    gen = ReplyGenerator(gpt2, tok, system_prompt="Be kind.", max_new_tokens=4)
    settings = version["settings"]
    with pytest.raises(EngineError, match="model type 'gpt2' is not 'llama'"):
        _by_choice(settings, "llamacpp", gen, "sha", None, "a gpt2 version")
    assert _by_choice(settings, "auto", gen, "sha", None, "a gpt2 version").name == "torch"


def test_q4_1_lora_needs_the_shipped_base_gguf(version):
    files = version["files"]
    with pytest.raises(LlamaCppError, match="needs the base model's own Q4_1 GGUF"):
        convert(version["settings"], files.base_model_sha, files.adapter_dir, version["generator"], "q4_1-lora",
                label="version 1")


def test_compute_type_is_checked_for_llamacpp(version):
    bad = version["settings"].model_copy(update={"serve_engine": "llamacpp", "serve_compute_type": "int4"})
    with pytest.raises(EngineError, match="REPLYLOOP_SERVE_COMPUTE_TYPE='int4'"):
        load_engine(bad, version["version"])


def test_llamacpp_module_reports_installed():
    assert llamacpp_engine.installed()


def test_float16_default_gives_the_reference_greedy_replies(version):
    """float16 is what `auto` serves (16/16 identical on SmolLM2's golden prompts, docs/api.md; 24/24 on the tiny
    model when written): rounding the weights may flip a near-tie, on one prompt at most."""
    convs = golden_conversations(24)
    reference = HFEngine(version["generator"]).generate(convs)
    fast = _engine(version, "f16").generate(convs)
    same = sum(a.text == b.text for a, b in zip(reference, fast, strict=True))
    assert same >= 23, f"{same}/{len(convs)} identical greedy replies"


def test_an_adapter_with_tensors_the_writer_does_not_handle_is_refused(version, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from replyloop.serving.gguf_llama import GGUFError

    adapter = tmp_path / "adapter"
    shutil.copytree(version["files"].adapter_dir, adapter)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    key = next(k for k in tensors if ".lora_A." in k)
    tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = tensors[key]
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(GGUFError, match="lora_embedding_A"):
        write_lora(adapter, version["generator"].model.config, tmp_path / "lora.gguf")
