"""The lean forward pass computes what transformers' LlamaForCausalLM computes, on the same weights."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from replyloop.serving.lean_llama import LeanLlama, unsupported_reason


def tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **overrides)
    return LlamaForCausalLM(cfg).eval()


def test_prefill_and_decoding_steps_give_transformers_logits():
    model = tiny_llama()
    lean = LeanLlama(model)
    ids = torch.randint(0, 97, (2, 9))
    with torch.inference_mode():
        want = model(ids).logits  # [2, 9, vocab]
        cache = lean.new_cache(2, 9)
        got = [lean.forward(ids[:, :6], torch.arange(6).expand(2, 6), cache,
                            torch.ones(6, 6, dtype=torch.bool).tril()[None, None].expand(2, 1, 6, 6))]
        for t in range(6, 9):
            got.append(lean.forward(ids[:, t:t + 1], torch.full((2, 1), t), cache,
                                    torch.ones(2, 1, 1, t + 1, dtype=torch.bool)))
    for step, logits in zip(range(5, 9), got, strict=True):
        torch.testing.assert_close(logits, want[:, step], rtol=1e-4, atol=1e-4)


def test_selected_positions_of_a_packed_sequence():
    """Two sequences packed into one (each attending to itself only) give their own logits."""
    model = tiny_llama()
    lean = LeanLlama(model)
    a, b = torch.randint(0, 97, (1, 5)), torch.randint(0, 97, (1, 3))
    seg = torch.tensor([0] * 5 + [1] * 3)
    idx = torch.arange(8)
    mask = ((seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None]))[None, None]
    with torch.inference_mode():
        got = lean.forward(torch.cat([a, b], 1), torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]]), lean.new_cache(1, 8),
                           mask, select=torch.tensor([4, 7]))
        want = torch.cat([model(a).logits[:, -1], model(b).logits[:, -1]])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_models_it_does_not_mirror_are_refused():
    assert unsupported_reason(tiny_llama()) is None
    scaled = tiny_llama(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    assert "rotary" in unsupported_reason(scaled)
    with pytest.raises(ValueError, match="rotary"):
        LeanLlama(scaled)
    assert "bias" in unsupported_reason(tiny_llama(attention_bias=True))
