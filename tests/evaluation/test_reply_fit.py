"""The reply-fit metric: a model that ignores the prompt scores chance; one whose likelihood of a reply
depends on the message scores above it; one taught shuffled pairs scores below the one taught right pairs.

Models are tiny Llamas on the tiny learner's tokenizer (tests/conftest.py), scored on the test golden set's
36 items (references and prompts through the serving chat builder).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from replyloop.evaluation.metrics import load_metric

GOLDEN = Path(__file__).parent / "data" / "eval" / "golden.jsonl"
SYSTEM = "You are the support team of a brand."


@pytest.fixture(scope="module")
def items():
    return [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tok(tiny_learner_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_learner_dir)


@pytest.fixture(scope="module")
def contexts(items, tok):
    from replyloop.chat import prompt_ids

    return [prompt_ids(tok, [{"role": m["role"], "text": m["text"]} for m in it["messages"]], SYSTEM, 400)
            for it in items]


def llama(tok, layers: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).eval()


def taught(tok, contexts, replies, steps: int = 80):
    """A two-layer Llama trained (full fine-tune, fixed seeds) on prompt -> reply pairs."""
    import torch

    model = llama(tok, 2)
    rows = [(list(c), tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
            for c, r in zip(contexts, replies)]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, 8)
        width = max(len(c) + len(r) for c, r in batch)
        ids = torch.full((8, width), tok.pad_token_id)
        labels = torch.full((8, width), -100)
        mask = torch.zeros((8, width), dtype=torch.long)
        for k, (c, r) in enumerate(batch):
            ids[k, : len(c) + len(r)] = torch.tensor(c + r)
            labels[k, len(c) : len(c) + len(r)] = torch.tensor(r)
            mask[k, : len(c) + len(r)] = 1
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def right(items, tok, contexts):
    """Taught the golden set's own prompt -> reference pairs."""
    return taught(tok, contexts, [it["reference"] for it in items])


def fit(model, tok, items, contexts, **kw):
    return load_metric("reply_fit").compute(predictions=[it["reference"] for it in items], model=model,
                                            tokenizer=tok, contexts=contexts,
                                            groups=[it["intent"] for it in items], **kw)


def test_distractors_are_deterministic_other_intents_first_and_never_the_same_text(items, tok, contexts):
    out = fit(llama(tok, 0), tok, items, contexts, distractors=3, seed=1)
    again = fit(llama(tok, 0), tok, items, contexts, distractors=3, seed=1)
    assert out["distractors"] == again["distractors"]
    assert out["distractors"] != fit(llama(tok, 0), tok, items, contexts, distractors=3, seed=2)["distractors"]
    for i, js in enumerate(out["distractors"]):
        assert len(js) == 3 and i not in js
        assert all(items[j]["intent"] != items[i]["intent"] for j in js)
        assert all(items[j]["reference"] != items[i]["reference"] for j in js)


def test_a_model_that_cannot_see_the_prompt_scores_chance(items, tok, contexts):
    """No layers: the next-token distribution depends on the previous token only, and every prompt ends
    with the same generation prompt, so a reference is exactly as likely after any prompt."""
    out = fit(llama(tok, 0), tok, items, contexts)
    assert np.allclose(out["scores"], 0.0, atol=1e-3)
    assert out["ranked_share"] == [0.5] * len(items)  # every distractor ties


def test_a_model_whose_replies_depend_on_the_prompt_scores_above_chance(items, tok, contexts, right):
    out = fit(right, tok, items, contexts)
    assert out["reply_fit"] > 5.0  # nats per reply
    assert np.mean(out["ranked_share"]) > 0.9


def test_shuffled_pairs_lower_the_score_on_the_same_prompts(items, tok, contexts, right):
    """Half the replies moved to other prompts (the same training otherwise): the right pairings lose."""
    refs = [it["reference"] for it in items]
    moved = list(range(0, len(refs), 2))
    texts = [refs[i] for i in moved]
    random.Random(3).shuffle(texts)
    shuffled = list(refs)
    for i, text in zip(moved, texts):
        shuffled[i] = text
    good = np.asarray(fit(right, tok, items, contexts)["scores"])
    poor = np.asarray(fit(taught(tok, contexts, shuffled), tok, items, contexts)["scores"])
    print(f"reply_fit right pairs {good.mean():.2f} vs half shuffled {poor.mean():.2f} nats/reply")
    assert good.mean() - poor.mean() > 2.0


def test_bad_arguments_are_named(items, tok, contexts):
    with pytest.raises(ValueError, match=r"one prompt \(contexts\) per reference"):
        load_metric("reply_fit").compute(predictions=["a"], model=llama(tok, 0), tokenizer=tok, contexts=[])
    with pytest.raises(ValueError, match="distractors must be at least 1"):
        fit(llama(tok, 0), tok, items, contexts, distractors=0)
    lone = load_metric("reply_fit").compute(predictions=["same", "same"], model=llama(tok, 0), tokenizer=tok,
                                            contexts=contexts[:2])
    assert all(np.isnan(lone["scores"]))  # nothing to compare with: NaN, which fails the gate's rules
