"""Supervised fine-tuning examples from a curated snapshot.

One example per conversation, rendered by the one chat builder (`replyloop.chat`, shared with inference).
Labels are -100 everywhere except on trainable agent turns, so the loss is on what the agent says only.
Feedback improves the data before rendering:
  - a down-voted reply with a correction is replaced by the correction (and trained on);
  - a down-voted reply without one stays as context but is taken out of the loss;
  - a reply the model itself served (author id `contract.SERVED_AUTHOR_PREFIX...`) is trained only when it
    was corrected or up-voted: otherwise the model would learn from its own unreviewed output.
Too long conversations lose whole OLDEST turns: the system prompt and the last trained agent reply (with
the turn it answers) stay whole; turns after that reply teach nothing and are dropped. An example that
cannot fit even so is skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd

from replyloop.chat import chat_messages, render_with_spans
from replyloop.contract import SERVED_AUTHOR_PREFIX

IGNORE = -100


@dataclass
class Example:
    conversation_id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


class Skipped(Exception):
    """A conversation gives no example; `reason` is counted ("too_long", "nothing_to_learn")."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _verdicts(feedback: pd.DataFrame) -> dict:
    if not len(feedback):
        return {}
    latest = feedback.sort_values("created_at").groupby(["conversation_id", "message_id"]).tail(1)
    return {(r.conversation_id, r.message_id): (r.rating, r.correction if isinstance(r.correction, str) else None)
            for r in latest.itertuples()}


def _turn(r, verdict: tuple, stats: Counter) -> dict:
    rating, correction = verdict
    served = isinstance(getattr(r, "author_id", None), str) and r.author_id.startswith(SERVED_AUTHOR_PREFIX)
    turn = {"role": r.role, "text": r.text, "train": r.role == "agent"}
    if r.role != "agent":
        return turn
    if rating == "down" and correction:
        turn["text"] = correction
        stats["corrected"] += 1
    elif rating == "down":
        turn["train"] = False
        stats["dropped_from_loss"] += 1
    elif rating == "up":
        stats["upvoted"] += 1
    elif served:
        turn["train"] = False
        stats["served_unreviewed"] += 1
    return turn


def conversations(messages: pd.DataFrame, feedback: pd.DataFrame, split: str) -> tuple[list[dict], dict]:
    """Conversations of one split with feedback applied, plus counts of what feedback changed."""
    verdict = _verdicts(feedback)
    stats = Counter({"corrected": 0, "dropped_from_loss": 0, "upvoted": 0, "served_unreviewed": 0})
    out = []
    part = messages[messages["split"] == split].sort_values(["conversation_id", "turn"])
    for conv_id, rows in part.groupby("conversation_id", sort=True):
        turns = [_turn(r, verdict.get((conv_id, r.message_id), (None, None)), stats) for r in rows.itertuples()]
        out.append({"conversation_id": conv_id, "turns": turns})
    return out, dict(stats)


def _labels(rendered, trained: list[bool]) -> list[int]:
    labels = [IGNORE] * len(rendered.ids)
    for (_, content, end), train in zip(rendered.spans, trained, strict=True):
        if train:
            labels[content:end] = rendered.ids[content:end]
    return labels


def render(tokenizer, system_prompt: str, conv: dict, max_len: int) -> Example:
    """Token ids with labels on the trainable agent turns; raises `Skipped` when there is no example."""
    turns = conv["turns"]
    last = max((k for k, t in enumerate(turns) if t["role"] == "agent" and t["train"]), default=None)
    if last is None:
        raise Skipped("nothing_to_learn", conv["conversation_id"])
    turns = turns[: last + 1]
    messages = chat_messages(turns, system_prompt)
    rendered = render_with_spans(tokenizer, messages)
    sizes = [end - start for start, _, end in rendered.spans]   # sizes[0] is the system prompt
    first, total = 0, len(rendered.ids)
    while total > max_len and first < last - 1:   # keep the last reply and the turn it answers
        total -= sizes[first + 1]
        first += 1
    while True:
        if first:
            rendered = render_with_spans(tokenizer, messages[:1] + messages[first + 1:])
        if len(rendered.ids) <= max_len:
            break
        if first >= last - 1:
            raise Skipped("too_long", f"{conv['conversation_id']}: the system prompt and the last reply with the "
                                      f"turn it answers take {len(rendered.ids)} tokens > max_seq_len={max_len}")
        first += 1
    trained = [False] + [t["role"] == "agent" and t["train"] for t in turns[first:]]
    return Example(conv["conversation_id"], rendered.ids, _labels(rendered, trained))


def build_examples(tokenizer, system_prompt: str, convs: list[dict], max_len: int,
                   skipped: Counter | None = None) -> list[Example]:
    """Examples of the conversations that give one; the others are counted by reason in `skipped`."""
    out = []
    for conv in convs:
        try:
            out.append(render(tokenizer, system_prompt, conv, max_len))
        except Skipped as exc:
            if skipped is not None:
                skipped[exc.reason] += 1
    return out


def prompts_and_references(convs: list[dict], limit: int) -> list[tuple[list[dict], str]]:
    """(context up to the first trainable agent turn, that reply) pairs for generation metrics."""
    pairs = []
    for conv in convs:
        turns = conv["turns"]
        for k, turn in enumerate(turns):
            if turn["role"] == "agent" and turn["train"] and k > 0:
                pairs.append(([{"role": t["role"], "text": t["text"]} for t in turns[:k]], turn["text"]))
                break
        if len(pairs) >= limit:
            break
    return pairs

