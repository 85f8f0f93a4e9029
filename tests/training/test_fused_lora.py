"""The fused LoRA projection (training/fused_lora.py) computes what peft's LoRA forward computes: the same
loss and the same LoRA gradients on the tiny Llama, in fp32 (dropout on and off) and under bf16 autocast;
the adapter it trains saves and loads as a plain peft adapter."""

from __future__ import annotations

import pytest

from replyloop.training.batching import collate, summed_loss, supervised_tokens
from replyloop.training.examples import build_examples

MODULES = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@pytest.fixture(scope="module")
def batch(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    convs = [{"conversation_id": f"c{i}", "turns": [
        {"role": "customer", "text": f"My order {i} is late " * (i + 1), "train": False},
        {"role": "agent", "text": f"Sorry, order {i} ships today. Please DM us.", "train": True}]} for i in range(3)]
    return collate(build_examples(tok, "sys", convs, 128), tok.pad_token_id)


def _model(tiny_model_dir, dtype, dropout: float):
    """The training path's LoRA model with seeded non-zero LoRA B, so the low-rank path counts."""
    import torch

    from replyloop.modeling import BaseModel
    from replyloop.training.config import load_train_config
    from replyloop.training.train import build_lora_model

    cfg = load_train_config(lora_r=4, lora_dropout=dropout, lora_target_modules=MODULES)
    model, _ = build_lora_model(BaseModel(tiny_model_dir, "x", "tiny"), cfg, dtype, fused=False)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model.train()


def batch_hidden(model):
    import torch

    return torch.randn(2, 5, model.get_base_model().config.hidden_size, requires_grad=True)


def _fn(t) -> str:
    return type(t.grad_fn).__name__


def _loss_and_grads(model, batch, dtype, seed=11):
    import torch

    from replyloop.training.loop import autocast

    torch.manual_seed(seed)
    with autocast(torch.device("cpu"), dtype):
        loss = summed_loss(model, batch) / supervised_tokens(batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_lora_equals_peft_in_fp32(tiny_model_dir, batch, dropout):
    """Same loss and LoRA gradients as peft's forward. Without dropout q/k/v and gate/up run as groups; with
    dropout each projection runs alone and the same seed draws the same mask as peft's dropout."""
    import torch

    from replyloop.training.fused_lora import fuse_lora

    model = _model(tiny_model_dir, torch.float32, dropout)
    ref_loss, ref = _loss_and_grads(model, batch, torch.float32)
    assert fuse_lora(model) == 2 * 7, "every adapted projection of the two layers is switched"
    attn = model.get_base_model().model.layers[0].self_attn
    x = batch_hidden(model)
    assert _fn(attn.o_proj(x)) == "LoraLinearFnBackward", "the fused path runs"
    grouped = [_fn(getattr(attn, n)(x)) for n in ("q_proj", "k_proj", "v_proj")]
    assert grouped == ["LoraGroupFnBackward"] * 3 if dropout == 0 else ["LoraLinearFnBackward"] * 3, grouped
    loss, grads = _loss_and_grads(model, batch, torch.float32)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref.keys() and len(grads) == 2 * 2 * 7
    for name in ref:
        assert ref[name].abs().max() > 0, name
        assert torch.allclose(grads[name], ref[name], rtol=1e-4, atol=1e-7), name


@pytest.mark.skipif(not __import__("replyloop.modeling", fromlist=["x"]).bf16_supported(
    __import__("torch").device("cpu")), reason="this CPU has no native bf16")
def test_fused_lora_tracks_peft_under_bf16_autocast(tiny_model_dir, batch):
    """bf16 base, fp32 LoRA weights, bf16 autocast (the training path): loss within 0.5 % of peft's, gradients
    in the same direction (cosine > 0.99) and of the same size (within 5 %), fp32 gradients."""
    import torch

    from replyloop.training.fused_lora import fuse_lora

    model = _model(tiny_model_dir, torch.bfloat16, 0.0)
    ref_loss, ref = _loss_and_grads(model, batch, torch.bfloat16)
    fuse_lora(model)
    loss, grads = _loss_and_grads(model, batch, torch.bfloat16)
    assert loss == pytest.approx(ref_loss, rel=5e-3)
    for name in ref:
        g, r = grads[name].flatten(), ref[name].flatten()
        assert g.dtype == torch.float32, name
        assert torch.nn.functional.cosine_similarity(g, r, dim=0) > 0.99, name
        assert float(g.norm() / r.norm()) == pytest.approx(1.0, abs=0.05), name


def test_fused_model_saves_a_peft_adapter(tiny_model_dir, batch, tmp_path):
    """After a fused training step the adapter saves with peft and loads into a plain (unfused) peft model
    that gives the same loss."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from replyloop.training.fused_lora import fuse_lora

    model = _model(tiny_model_dir, torch.float32, 0.0)
    fuse_lora(model)
    _, grads = _loss_and_grads(model, batch, torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in grads:
                p.sub_(0.1 * grads[name])
    model.save_pretrained(tmp_path / "adapter")
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                                      tmp_path / "adapter").eval()
    model.eval()
    with torch.no_grad():
        fused_loss, plain_loss = float(summed_loss(model, batch)), float(summed_loss(plain, batch))
    assert fused_loss == pytest.approx(plain_loss, rel=1e-6)
