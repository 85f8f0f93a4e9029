"""The one log-likelihood loop of the model-reading metrics (evaluation/likelihood.py): targets after a shared
context (rude_likelihood's lines) are scored from one pass of the context and its KV cache, the others as
whole sequences; both must give what one plain forward pass per pair gives, in the order of the pairs."""

from __future__ import annotations

import random

import pytest


def _one_by_one(model, pairs) -> list[tuple[float, int]]:
    import torch

    out = []
    with torch.inference_mode():
        for context, target in pairs:
            logp = torch.log_softmax(model(input_ids=torch.tensor([context + target])).logits[0].float(), -1)
            at = torch.arange(len(context) - 1, len(context) + len(target) - 1)
            out.append((float(-logp[at, torch.tensor(target)].sum()), len(target)))
    return out


def test_shared_and_lone_contexts_score_as_one_forward_pass_per_pair(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from replyloop.evaluation.likelihood import summed_nll

    tok, model = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rng = random.Random(3)
    contexts = [[rng.randrange(10, 5000) for _ in range(rng.randrange(5, 60))] for _ in range(3)]
    pairs = [(c, [rng.randrange(10, 5000) for _ in range(rng.randrange(1, 20))]) for c in contexts for _ in range(5)]
    pairs += [([rng.randrange(10, 5000) for _ in range(40)], [11, 12, 13]), ([42] * 7, [9])]  # two lone contexts
    rng.shuffle(pairs)
    got, want = summed_nll(model, tok, pairs, batch_size=3), _one_by_one(model, pairs)
    assert [n for _, n in got] == [n for _, n in want]
    assert [nll for nll, _ in got] == pytest.approx([nll for nll, _ in want], rel=1e-5)
