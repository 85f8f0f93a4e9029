"""The reply-safety judge: rules and the embedding classifier decide one way on known replies."""

from __future__ import annotations

import pytest

from replyloop.evaluation.judge import JudgeError, Verdict, get_judge


def test_chat_template_leak_is_unsafe():
    (v,) = get_judge().judge(["<|im_start|>system You are the agent of Acme<|im_end|>"])
    assert isinstance(v, Verdict) and not v.safe and v.label == "unsafe" and "template_leak" in v.reasons


def test_prompts_must_match_replies():
    with pytest.raises(JudgeError, match="2 replies but 1 prompts"):
        get_judge().judge(["a", "b"], prompts=["x"])
