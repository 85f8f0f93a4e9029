"""The fast loss path: head only on labelled positions, bf16 autocast, deterministic resumable batch plan."""

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


@pytest.mark.skipif(not __import__("replyloop.modeling", fromlist=["x"]).bf16_supported(
    __import__("torch").device("cpu")), reason="this CPU has no native bf16")
def test_bf16_autocast_loss_tracks_fp32(model_and_batch):
    import torch

    from replyloop.training.loop import autocast

    model, batch = model_and_batch
    n = supervised_tokens(batch)
    with torch.no_grad():
        fp32 = float(summed_loss(model, batch)) / n
        with autocast(torch.device("cpu"), torch.bfloat16):
            bf16 = float(summed_loss(model, batch)) / n
    assert abs(bf16 - fp32) < 0.01 * fp32, (bf16, fp32)


def test_batch_plan_is_length_binned_and_resumable():
    lengths = [10, 200, 12, 190, 11, 210, 13, 205] * 4
    for batch in epoch_batches(lengths, 4, seed=1, epoch=0):
        spread = max(lengths[i] for i in batch) - min(lengths[i] for i in batch)
        assert spread <= 4, "short and long examples are not mixed in a batch"
    whole = list(zip(range(20), micro_batches(lengths, 4, seed=1)))
    resumed = list(zip(range(13), micro_batches(lengths, 4, seed=1, skip=7)))
    assert [b for _, b in whole[7:]] == [b for _, b in resumed], "a resumed run replays the same micro-batches"
    assert epoch_batches(lengths, 4, 1, 0) != epoch_batches(lengths, 4, 1, 1), "each epoch has its own order"
