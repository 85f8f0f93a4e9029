"""The fast path (CTranslate2 on merged weights) answers like the reference HF path of the same version."""

from __future__ import annotations

import json

from replyloop import registry, resources
from replyloop.serving.engine import CT2Engine, HFEngine, convert_version, load_engine, version_config


def golden_conversations(n: int) -> list[list[dict]]:
    with open(resources.ROOT / "eval" / "golden.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [[{"role": m["role"], "text": m["text"]} for m in r["messages"]] for r in rows[:n]]


def test_fast_path_matches_the_reference_on_golden_prompts(served_registry):
    settings = served_registry["settings"]
    version = served_registry["versions"][0]
    convs = golden_conversations(24)
    reference = HFEngine(registry.load_version(settings, version)).generate(convs)
    files = registry.download_version(settings, version)
    cfg = version_config(files)
    fast = CT2Engine(convert_version(settings, files), system_prompt=cfg["system_prompt"],
                     max_new_tokens=int(cfg["max_new_tokens"]), max_prompt_tokens=400,
                     compute_type="float32")
    same = sum(a.text == b.text for a, b in zip(reference, fast.generate(convs), strict=True))
    assert same >= 0.9 * len(convs), f"{same}/{len(convs)} identical greedy replies"


def test_conversion_is_cached_by_content(served_registry):
    settings = served_registry["settings"]
    v1, v2 = served_registry["versions"]
    first = convert_version(settings, registry.download_version(settings, v1))
    stamp = (first / "ct2" / "model.bin").stat().st_mtime_ns
    assert convert_version(settings, registry.download_version(settings, v1)) == first
    assert (first / "ct2" / "model.bin").stat().st_mtime_ns == stamp
    assert convert_version(settings, registry.download_version(settings, v2)) != first


def test_engine_setting_is_checked(served_registry):
    bad = served_registry["settings"].model_copy(update={"serve_engine": "turbo"})
    try:
        load_engine(bad, served_registry["versions"][0])
    except Exception as exc:
        assert "REPLYLOOP_SERVE_ENGINE='turbo'" in str(exc)
    else:
        raise AssertionError("an unknown engine name was accepted")


def test_hf_reference_is_the_fallback_engine(served_registry):
    hf = served_registry["settings"].model_copy(update={"serve_engine": "hf"})
    engine = load_engine(hf, served_registry["versions"][0])
    assert engine.name == "hf" and engine.generate([[{"role": "customer", "text": "hi"}]])[0].tokens >= 0
