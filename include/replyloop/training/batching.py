"""Length-binned micro-batches and the supervised loss, computed only where labels are set.

Batches hold examples of similar length (little padding), the order of batches is random, and the plan
is a pure function of (seed, epoch): a resumed run replays exactly the micro-batches an uninterrupted one
would have seen, from any step on. The loss runs the language-model head only on the positions that carry
a label (a 49k-token head over every position is about a fifth of SmolLM2's FLOPs), in fp32.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from replyloop.training.examples import IGNORE, Example


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of index batches: shuffled, sorted by length within windows of 16 batches, batches shuffled."""
    rng = random.Random(f"{seed}:{epoch}")
    idx = rng.sample(range(len(lengths)), len(lengths))
    window = batch_size * 16
    batches = []
    for i in range(0, len(idx), window):
        chunk = sorted(idx[i : i + window], key=lambda j: lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def micro_batches(lengths: list[int], batch_size: int, seed: int, skip: int = 0) -> Iterator[list[int]]:
    """The endless stream of micro-batches, epoch after epoch, starting after the first `skip` of them."""
    stream = (b for epoch in itertools.count() for b in epoch_batches(lengths, batch_size, seed, epoch))
    return itertools.islice(stream, skip, None)


def collate(batch: list[Example], pad_id: int):
    """Right-padded input ids, labels (-100 on padding) and attention mask."""
    import torch

    width = max(len(ex.input_ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ex in enumerate(batch):
        n = len(ex.input_ids)
        ids[i, :n] = torch.tensor(ex.input_ids)
        labels[i, :n] = torch.tensor(ex.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def supervised_tokens(batch) -> int:
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def summed_loss(model, batch):
    """Sum of next-token cross-entropy over labelled positions (divide by `supervised_tokens`).

    `model` is a causal LM (or a peft model around one): its decoder runs on the whole batch, its output
    head only on the hidden states that predict a labelled token."""
    import torch.nn.functional as F

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  use_cache=False).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")
