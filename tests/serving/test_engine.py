"""The fast path (CTranslate2 on merged weights) answers like the reference HF path of the same version."""

from __future__ import annotations

import json

import pytest

from replyloop import registry, resources
from replyloop.chat import prompt_ids
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
    assert engine.name == "hf" and engine.generate([[{"role": "customer", "text": "hi"}]])[0].tokens > 0


def test_torch_engine_matches_the_reference_on_golden_prompts(served_registry):
    from replyloop.serving.torch_engine import TorchEngine

    settings = served_registry["settings"]
    version = served_registry["versions"][0]
    convs = golden_conversations(24)
    reference = HFEngine(registry.load_version(settings, version)).generate(convs)
    fast = TorchEngine(registry.load_version(settings, version)).generate(convs)
    same = sum(a.text == b.text for a, b in zip(reference, fast, strict=True))
    assert same >= 0.9 * len(convs), f"{same}/{len(convs)} identical greedy replies"


def test_layout_right_aligns_each_row_after_the_prefix():
    from replyloop.serving.torch_engine import layout_after_prefix

    lay = layout_after_prefix([7, 8], [[7, 8, 1, 2, 3], [7, 8, 4]], pad_id=0)
    assert lay.input_ids == [[7, 8, 1, 2, 3], [7, 8, 0, 0, 4]]
    assert lay.attention_mask == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]


def test_layout_without_prefix_is_left_padding():
    from replyloop.serving.torch_engine import layout_after_prefix

    lay = layout_after_prefix([], [[5], [1, 2, 3]], pad_id=9)
    assert lay.input_ids == [[9, 9, 5], [1, 2, 3]]
    assert lay.attention_mask == [[0, 0, 1], [1, 1, 1]]


def test_layout_refuses_a_row_that_does_not_go_on_after_the_prefix():
    import pytest

    from replyloop.serving.torch_engine import layout_after_prefix

    with pytest.raises(ValueError, match="start with the prefix"):
        layout_after_prefix([7, 8], [[7, 8]], pad_id=0)
    with pytest.raises(ValueError, match="start with the prefix"):
        layout_after_prefix([7, 8], [[7, 9, 1]], pad_id=0)


def test_common_prefix():
    from replyloop.serving.torch_engine import common_prefix

    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[1], [2]]) == 0


def test_torch_engine_answers_a_request_alike_alone_and_in_a_batch(served_registry):
    """The cached prefix and the masked padding do not change a row's reply (greedy tokens, most rows)."""
    from replyloop.serving.torch_engine import TorchEngine

    settings = served_registry["settings"]
    engine = TorchEngine(registry.load_version(settings, served_registry["versions"][0]))
    convs = golden_conversations(12)
    alone = [engine.generate([c])[0].text for c in convs]
    batch = [g.text for g in engine.generate(convs)]
    same = sum(a == b for a, b in zip(alone, batch, strict=True))
    assert same >= 0.9 * len(convs), f"{same}/{len(convs)} identical"


def test_torch_engine_keeps_the_prompt_in_the_decoding_rule(served_registry):
    """The engine decodes with the reference generator's own arguments (penalties over prompt + reply)."""
    from replyloop.serving.torch_engine import TorchEngine

    gen = registry.load_version(served_registry["settings"], served_registry["versions"][0])
    engine = TorchEngine(gen)
    rule = engine.gen.generate_kwargs()
    assert not rule["do_sample"] and len(rule["logits_processor"]) == 3  # penalty, n-gram block, no '@'
    assert engine.prefix and engine.prefix == prompt_ids(gen.tok, [{"role": "customer", "text": "x"}],
                                                         gen.system_prompt, 1024)[: len(engine.prefix)]


def test_batch_collection_follows_arrivals_up_to_the_cap():
    from pytest import approx

    from replyloop.serving.batcher import collect_deadline

    assert collect_deadline(10.0, 10.0, 0.004, 0.05) == approx(10.004)    # a lone request waits the gap only
    assert collect_deadline(10.0, 10.03, 0.004, 0.05) == approx(10.034)   # each arrival extends the wait
    assert collect_deadline(10.0, 10.049, 0.004, 0.05) == approx(10.05)   # never past the cap after the first
    assert collect_deadline(10.0, 10.0, 0.004, 0.0) == approx(10.004)     # a cap below the gap: the gap


@pytest.mark.parametrize("draft", ["int8", "bfloat16"])
def test_a_drafted_lone_request_decodes_the_target_models_tokens(served_registry, draft):
    """Speculative decoding (a cheaper copy drafts, the float32 model keeps what it would have chosen) gives the
    float32 engine's greedy replies under the same decoding rule."""
    from replyloop.serving.torch_engine import TorchEngine

    settings = served_registry["settings"]
    engine = TorchEngine(registry.load_version(settings, served_registry["versions"][0]))
    convs = golden_conversations(8)
    plain = [engine.generate([c])[0] for c in convs]
    engine.use_draft(draft, k=3)
    drafted = [engine.generate([c])[0] for c in convs]
    assert engine.speculative.stats.rounds > 0
    same = sum(a == b for a, b in zip(plain, drafted, strict=True))
    assert same >= 0.9 * len(convs), f"{same}/{len(convs)} identical"


def test_draft_setting_is_checked(served_registry):
    bad = served_registry["settings"].model_copy(update={"serve_draft": "int4"})
    with pytest.raises(Exception, match="REPLYLOOP_SERVE_DRAFT='int4'"):
        load_engine(bad, served_registry["versions"][0])


def test_lean_decoding_gives_the_tokens_of_generate(served_registry):
    """The engine's lean decoding loop (packed prefill, preallocated cache) and transformers' `generate` with the
    same ids, mask and decoding rule choose the same greedy tokens."""
    from replyloop.serving.torch_engine import TorchEngine

    engine = TorchEngine(registry.load_version(served_registry["settings"], served_registry["versions"][0]))
    assert engine.lean is not None  # the tiny model is a Llama
    rows = [prompt_ids(engine.tok, c, engine.gen.system_prompt, 400) for c in golden_conversations(12)]
    lean = engine._decode_lean(rows, with_prefix=True)
    reference = engine._decode(rows, with_prefix=True)
    same = sum(a == b for a, b in zip(lean, reference, strict=True))
    assert same >= 0.9 * len(rows), f"{same}/{len(rows)} identical"


def test_rows_are_grouped_within_the_token_budget():
    from replyloop.serving.torch_engine import _groups

    assert _groups([3, 4, 2, 9, 1], budget=8) == [[0, 1], [2], [3], [4]]
    assert _groups([5], budget=2) == [[0]]
