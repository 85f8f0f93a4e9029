"""The fast loss path: head only on labelled positions, bf16 base with fp32 LoRA, deterministic resumable
batch plan."""

from __future__ import annotations

import pytest

from replyloop.training.batching import collate, epoch_batches, micro_batches, summed_loss, supervised_tokens
from replyloop.training.examples import build_examples


@pytest.fixture(scope="module")
def model_and_batch(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    convs = [{"conversation_id": f"c{i}", "turns": [
        {"role": "customer", "text": f"My order {i} is late " * (i + 1), "train": False},
        {"role": "agent", "text": "Sorry to hear that, please DM us your order number.", "train": True},
        {"role": "customer", "text": "Done", "train": False},
        {"role": "agent", "text": f"Thanks, order {i} ships today.", "train": True}]} for i in range(4)]
    batch = collate(build_examples(tok, "sys", convs, 256), tok.pad_token_id)
    return model, batch


def test_head_only_on_labels_gives_the_full_loss(model_and_batch):
    import torch

    model, batch = model_and_batch
    with torch.no_grad():
        ours = summed_loss(model, batch) / supervised_tokens(batch)
        reference = model(**batch).loss
    assert torch.allclose(ours, reference, rtol=1e-5), (float(ours), float(reference))


def _lora_model(tiny_model_dir, dtype, **lora):
    """The training path's LoRA model on the tiny Llama, with seeded non-zero LoRA B (so the adapters count)."""
    import torch

    from replyloop.modeling import BaseModel
    from replyloop.training.config import load_train_config
    from replyloop.training.train import build_lora_model

    cfg = load_train_config(**{"lora_r": 4, "lora_dropout": 0.0, "lora_target_modules": "q_proj,v_proj,down_proj",
                               **lora})
    model, _ = build_lora_model(BaseModel(tiny_model_dir, "x", "tiny"), cfg, dtype)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.skipif(not __import__("replyloop.modeling", fromlist=["x"]).bf16_supported(
    __import__("torch").device("cpu")), reason="this CPU has no native bf16")
def test_bf16_training_loss_tracks_fp32(tiny_model_dir, model_and_batch):
    """The bf16 training model (frozen base held in bf16 under bf16 autocast, LoRA weights fp32) gives the
    fp32 loss within 1 %, through the same autocast context the loop uses."""
    import torch

    from replyloop.training.loop import autocast

    _, batch = model_and_batch
    n = supervised_tokens(batch)
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = _lora_model(tiny_model_dir, dtype).eval()
        with torch.no_grad(), autocast(torch.device("cpu"), dtype):
            losses[dtype] = float(summed_loss(model, batch)) / n
        lora = [p for n_, p in model.named_parameters() if "lora_" in n_]
        assert lora and all(p.dtype == torch.float32 for p in lora), "LoRA weights stay fp32"
        assert model.get_base_model().model.layers[0].mlp.up_proj.weight.dtype == dtype
    assert abs(losses[torch.bfloat16] - losses[torch.float32]) < 0.01 * losses[torch.float32], losses


def test_batch_plan_is_length_binned_and_resumable():
    lengths = [10, 200, 12, 190, 11, 210, 13, 205] * 4
    for batch in epoch_batches(lengths, 4, seed=1, epoch=0):
        spread = max(lengths[i] for i in batch) - min(lengths[i] for i in batch)
        assert spread <= 4, "short and long examples are not mixed in a batch"
    whole = list(zip(range(20), micro_batches(lengths, 4, seed=1)))
    resumed = list(zip(range(13), micro_batches(lengths, 4, seed=1, skip=7)))
    assert [b for _, b in whole[7:]] == [b for _, b in resumed], "a resumed run replays the same micro-batches"
    assert epoch_batches(lengths, 4, 1, 0) != epoch_batches(lengths, 4, 1, 1), "each epoch has its own order"


def test_early_stopping_keeps_the_best_adapter(tiny_model_dir):
    """A learning rate far too high makes the held-out loss rise: training stops after `patience`
    evaluations without improvement and the adapter it keeps is the best one, not the last."""
    import torch
    from transformers import AutoTokenizer

    from replyloop.modeling import BaseModel
    from replyloop.training.config import load_train_config
    from replyloop.training.loop import Trainer, held_out_loss
    from replyloop.training.train import build_lora_model

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    convs = [{"conversation_id": f"c{i}", "turns": [
        {"role": "customer", "text": f"Where is order {i}?", "train": False},
        {"role": "agent", "text": f"Order {i} ships today, sorry for the wait.", "train": True}]} for i in range(6)]
    examples = build_examples(tok, "sys", convs, 64)
    cfg = load_train_config(max_steps=8, batch_size=2, learning_rate=0.5, warmup_steps=0, eval_every=1,
                            early_stopping_patience=2, lora_r=4, lora_target_modules="q_proj,v_proj")
    model, _ = build_lora_model(BaseModel(tiny_model_dir, "x", "tiny"), cfg, torch.float32)
    evals = []
    state = Trainer(model, cfg, examples[:4], examples[4:], tok.pad_token_id, torch.device("cpu"),
                    torch.float32).run(on_step=lambda *a: None, on_eval=lambda step, loss: evals.append(loss),
                                       on_checkpoint=lambda snap: None)
    assert state.stopped_early and state.step < cfg.max_steps
    assert min(evals[-2:]) > min(evals) == state.best_loss, "the last `patience` evaluations did not improve"
    kept = held_out_loss(model, examples[4:], tok.pad_token_id, 2, torch.device("cpu"), torch.float32)
    assert kept == pytest.approx(min(evals), rel=1e-5), "the adapter kept is the best one, not the last"


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir, model_and_batch):
    import torch

    from replyloop.modeling import BaseModel
    from replyloop.training.config import load_train_config
    from replyloop.training.train import build_lora_model

    _, batch = model_and_batch
    grads = []
    for checkpointing in (False, True):
        cfg = load_train_config(gradient_checkpointing=checkpointing, lora_r=4, lora_dropout=0.0,
                                lora_target_modules="q_proj,v_proj,down_proj")
        model, _ = build_lora_model(BaseModel(tiny_model_dir, "x", "tiny"), cfg, torch.float32)
        model.train()
        summed_loss(model, batch).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        assert model.get_base_model().is_gradient_checkpointing == checkpointing
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6) for n in grads[0])
