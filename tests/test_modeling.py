"""The reply decoding rule (modeling.decoding_rule), on hand-made ids: no model is loaded."""

from __future__ import annotations

import math

import numpy as np
import torch

from replyloop.modeling import decoding_rule, rule_scores

EOT, SIGN, CARET, DOT, OTHER = 2, 10, 11, 12, 13


def _scores(vocab: int = 20) -> torch.Tensor:
    return torch.linspace(1.0, 2.0, vocab)[None].clone()


def test_a_reply_may_end_after_the_signature_an_earlier_agent_turn_ended_with():
    """The 4-gram (. ^ PD <eot>) of an earlier agent turn must not forbid ending this reply the same way."""
    earlier_turn = [5, DOT, CARET, SIGN, EOT, 7, 8, EOT]
    this_reply = [6, DOT, CARET, SIGN]
    ids = torch.tensor([earlier_turn + this_reply])
    raw = _scores()
    out = decoding_rule([EOT], [], device="cpu")(ids, raw.clone())
    assert out[0, EOT] == raw[0, EOT]  # neither penalised (the prompt holds <eot>) nor blocked


def test_other_tokens_still_obey_the_penalty_and_the_ngram_block():
    ids = torch.tensor([[6, DOT, CARET, OTHER, 9, 6, DOT, CARET]])  # (6 . ^ OTHER) seen: OTHER is blocked next
    raw = _scores()
    out = decoding_rule([EOT], [], device="cpu")(ids, raw.clone())
    assert out[0, OTHER] == -math.inf
    assert math.isclose(float(out[0, 9]), float(raw[0, 9]) / 1.1, rel_tol=1e-6)  # seen once: penalised
    assert out[0, 3] == raw[0, 3]  # never seen: unchanged


def test_suppressed_tokens_are_never_chosen():
    out = decoding_rule([EOT], [4], device="cpu")(torch.tensor([[1, 2, 3]]), _scores())
    assert out[0, 4] == -math.inf


def test_the_numpy_rule_gives_the_processors_scores():
    """rule_scores (the engines' per-step path) equals decoding_rule's torch processors, bit for bit, on rows
    with left padding, repeated n-grams, end-of-turn tokens in the prompt and negative scores."""
    gen = torch.Generator().manual_seed(0)
    vocab, eot, suppressed = 50, [EOT, 3], [4, 17]
    for length in (2, 3, 4, 9, 40):
        ids = torch.randint(0, 12, (6, length), generator=gen)  # few distinct ids: n-grams repeat
        ids[0, : length // 2] = 0  # a left-padded row
        raw = torch.randn(6, vocab, generator=gen) * 8
        expected = decoding_rule(eot, suppressed, device="cpu")(ids, raw.clone())
        got = rule_scores(ids.numpy(), raw.numpy(), eot, suppressed)
        assert np.array_equal(got, expected.numpy()), f"length {length}"
        assert (got.argmax(-1) == expected.argmax(-1).numpy()).all()


def test_the_numpy_rule_matches_on_edge_cases():
    """Ids past the scores' width (a tokenizer larger than the model's head), infinite and signed-zero scores,
    no suppressed tokens, a suppressed id past the width, rows shorter than the n-gram."""
    gen = torch.Generator().manual_seed(1)
    vocab = 30
    for length, suppressed in ((1, []), (3, [4]), (12, []), (12, [5, vocab + 3])):
        ids = torch.randint(0, vocab + 5, (4, length), generator=gen)
        raw = torch.randn(4, vocab, generator=gen)
        raw[0, :3] = torch.tensor([math.inf, -math.inf, -0.0])
        raw[1, ids[1, 0].clamp(max=vocab - 1)] = 0.0
        expected = decoding_rule([EOT], suppressed, device="cpu")(ids, raw.clone())
        got = rule_scores(ids.numpy(), raw.numpy(), [EOT], suppressed)
        assert np.array_equal(got.view(np.int32), expected.numpy().view(np.int32)), f"length {length}"
