"""SFT examples: one chat builder, loss on agent turns only, truncation from the oldest turns, feedback."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from replyloop.chat import chat_messages, prompt_ids
from replyloop.training.examples import IGNORE, Skipped, build_examples, conversations, prompts_and_references, render


def frame(rows):
    cols = ["conversation_id", "turn", "message_id", "role", "author_id", "text", "split"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


MESSAGES = frame([
    ("c1", 0, "m1", "customer", "u1", "Where is my parcel?", "train"),
    ("c1", 1, "m2", "agent", "AcmeSupport", "@u1 Sorry! DM us your order number.", "train"),
    ("c1", 2, "m3", "customer", "u1", "Done.", "train"),
    ("c1", 3, "m4", "agent", "AcmeSupport", "Thanks, it ships today.", "train"),
    ("c2", 0, "m5", "customer", "u2", "Refund please", "eval"),
    ("c2", 1, "m6", "agent", "AcmeSupport", "whatever", "eval"),
    ("c3", 0, "m7", "customer", "u3", "Is the shop open?", "train"),
    ("c3", 1, "m8", "agent", "replyloop:v3", "Served and never reviewed.", "train"),
    ("c3", 2, "m9", "customer", "u3", "And on Sunday?", "train"),
    ("c3", 3, "m10", "agent", "replyloop:v3", "Served and corrected.", "train"),
    ("c4", 0, "m11", "customer", "u4", "Thanks!", "train"),
    ("c4", 1, "m12", "agent", "replyloop:v3", "Served and up-voted.", "train"),
])
FEEDBACK = pd.DataFrame([
    {"conversation_id": "c1", "message_id": "m2", "rating": "down", "correction": "Sorry about the wait! Please DM us.",
     "created_at": "2026-11-20T10:00:00Z"},
    {"conversation_id": "c1", "message_id": "m4", "rating": "down", "correction": None, "created_at": "2026-11-20T10:00:00Z"},
    {"conversation_id": "c2", "message_id": "m6", "rating": "up", "correction": float("nan"), "created_at": "2026-11-20T10:00:00Z"},
    {"conversation_id": "c3", "message_id": "m10", "rating": "down", "correction": "Yes, 10 to 4 on Sundays.",
     "created_at": "2026-11-20T10:00:00Z"},
    {"conversation_id": "c4", "message_id": "m12", "rating": "up", "correction": None, "created_at": "2026-11-20T10:00:00Z"},
])


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


def labelled(tok, ex) -> str:
    return tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])


def test_feedback_replaces_and_drops():
    convs, stats = conversations(MESSAGES, FEEDBACK, "train")
    turns = convs[0]["turns"]
    assert turns[1]["text"] == "Sorry about the wait! Please DM us." and turns[1]["train"]
    assert turns[3]["text"] == "Thanks, it ships today." and not turns[3]["train"]
    assert stats == {"corrected": 2, "dropped_from_loss": 1, "upvoted": 1, "served_unreviewed": 1}
    eval_convs, eval_stats = conversations(MESSAGES, FEEDBACK, "eval")
    assert eval_convs[0]["turns"][1] == {"role": "agent", "text": "whatever", "train": True}
    assert eval_stats["upvoted"] == 1


def test_served_replies_train_only_when_corrected_or_upvoted(tok):
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    by_id = {c["conversation_id"]: c for c in convs}
    c3 = labelled(tok, render(tok, "sys", by_id["c3"], 512))
    assert "Yes, 10 to 4 on Sundays." in c3 and "never reviewed" not in c3
    assert "Served and up-voted." in labelled(tok, render(tok, "sys", by_id["c4"], 512))


def test_loss_only_on_trainable_agent_turns(tok):
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    ex = render(tok, "You are Acme's agent.", convs[0], max_len=512)
    text = labelled(tok, ex)
    assert "Sorry about the wait! Please DM us.<|im_end|>" in text, "the reply and its end token are trained"
    assert "Where is my parcel" not in text and "Done." not in text, "customer turns must not be trained"
    assert "ships today" not in text, "a down-voted reply without correction is not trained"
    assert "You are Acme" not in text and "assistant" not in text, "nor the system prompt or role headers"
    full = tok.decode(ex.input_ids)
    assert full.startswith("<|im_start|>system\nYou are Acme's agent.") and "<|im_start|>assistant" in full


def test_same_chat_as_inference(tok):
    """Training renders exactly the prompt inference builds, followed by the reply."""
    turns = [{"role": "customer", "text": "@AcmeSupport Where is my parcel?"},
             {"role": "agent", "text": "Sorry! DM us.", "train": True}]
    ex = render(tok, "sys", {"conversation_id": "x", "turns": turns}, 512)
    prompt = prompt_ids(tok, turns[:1], "sys", 512)
    assert ex.input_ids[: len(prompt)] == prompt
    assert chat_messages(turns[:1], "sys")[1] == {"role": "user", "content": "Where is my parcel?"}


def long_conversation(n_pairs: int) -> dict:
    turns = []
    for i in range(n_pairs):
        turns.append({"role": "customer", "text": f"Question number {i} about my order, which is still late.",
                      "train": False})
        turns.append({"role": "agent", "text": f"Answer number {i}: sorry, we are looking into it.", "train": True})
    turns.append({"role": "customer", "text": "Thanks.", "train": False})
    return {"conversation_id": "long", "turns": turns}


def test_truncation_drops_oldest_turns_and_keeps_the_last_reply(tok):
    conv = long_conversation(6)
    full = render(tok, "sys", conv, max_len=2048)
    cut = render(tok, "sys", conv, max_len=len(full.input_ids) // 2)
    text = tok.decode(cut.input_ids)
    assert len(cut.input_ids) <= len(full.input_ids) // 2
    assert text.startswith("<|im_start|>system\nsys<|im_end|>\n"), "the system prompt is kept"
    assert "Answer number 5: sorry, we are looking into it.<|im_end|>" in labelled(tok, cut), "the last reply, whole"
    assert "Question number 5" in text and "Question number 0" not in text, "the oldest turns go first"
    assert "Thanks." not in text, "turns after the last trained reply teach nothing"
    tail = len(cut.input_ids) - 8
    assert cut.input_ids[-tail:] == full.input_ids[-tail:] and cut.labels[-tail:] == full.labels[-tail:]


def test_inference_prompt_drops_oldest_turns_and_keeps_the_last_message(tok):
    conv = [{"role": t["role"], "text": t["text"]} for t in long_conversation(6)["turns"]]
    full = prompt_ids(tok, conv, "sys", 4096)
    cut = tok.decode(prompt_ids(tok, conv, "sys", len(full) // 2))
    assert cut.startswith("<|im_start|>system\nsys<|im_end|>\n<|im_start|>")
    assert cut.endswith("<|im_start|>user\nThanks.<|im_end|>\n<|im_start|>assistant\n")
    assert "Question number 0" not in cut and "Answer number 5: sorry, we are looking into it." in cut
    assert len(prompt_ids(tok, "word " * 500, "sys", 64)) <= 64, "one huge message keeps its newest words"


def test_too_long_even_after_truncation_is_skipped_and_counted(tok):
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    with pytest.raises(Skipped, match="too_long: long: .* > max_seq_len=20"):
        render(tok, "sys", long_conversation(2), max_len=20)
    only_dropped = {"conversation_id": "x", "turns": [{"role": "customer", "text": "hi", "train": False},
                                                      {"role": "agent", "text": "no", "train": False}]}
    skipped = Counter()
    examples = build_examples(tok, "sys", convs + [only_dropped, long_conversation(3)], 40, skipped)
    assert skipped == {"nothing_to_learn": 1, "too_long": 1}
    assert [e.conversation_id for e in examples] == ["c1", "c3", "c4"]


def test_prompts_and_references_stop_before_the_reply():
    convs, _ = conversations(MESSAGES, FEEDBACK, "train")
    (context, reference), *_ = prompts_and_references(convs, 10)
    assert context == [{"role": "customer", "text": "Where is my parcel?"}]
    assert reference == "Sorry about the wait! Please DM us."
