"""Supervised fine-tuning examples from a curated snapshot.

One example per conversation, rendered with the base model's chat template (system prompt, customer
turns as `user`, agent turns as `assistant`). Labels are -100 everywhere except on agent turns, so the
loss is on what the agent says only. Feedback improves the data before rendering:
  - a down-voted reply with a correction is replaced by the correction (and trained on);
  - a down-voted reply without one stays as context but is taken out of the loss;
  - up-votes keep the reply as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from replyloop.text import strip_leading_mentions

IGNORE = -100


@dataclass
class Example:
    conversation_id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def conversations(messages: pd.DataFrame, feedback: pd.DataFrame, split: str) -> tuple[list[dict], dict]:
    """Conversations of one split with feedback applied, plus counts of what feedback changed."""
    latest = (feedback.sort_values("created_at").groupby(["conversation_id", "message_id"]).tail(1)
              if len(feedback) else feedback)
    verdict = {(r.conversation_id, r.message_id): (r.rating, r.correction if isinstance(r.correction, str) else None)
               for r in latest.itertuples()}
    stats = {"corrected": 0, "dropped_from_loss": 0, "upvoted": 0}
    out = []
    part = messages[messages["split"] == split].sort_values(["conversation_id", "turn"])
    for conv_id, rows in part.groupby("conversation_id", sort=True):
        turns = []
        for r in rows.itertuples():
            turn = {"role": r.role, "text": strip_leading_mentions(r.text), "train": r.role == "agent"}
            rating, correction = verdict.get((conv_id, r.message_id), (None, None))
            if r.role == "agent" and rating == "down":
                if correction:
                    turn["text"] = strip_leading_mentions(correction)
                    stats["corrected"] += 1
                else:
                    turn["train"] = False
                    stats["dropped_from_loss"] += 1
            elif rating == "up":
                stats["upvoted"] += 1
            turns.append(turn)
        out.append({"conversation_id": conv_id, "turns": turns})
    return out, stats


def _chat(system_prompt: str, turns: list[dict]) -> list[dict]:
    chat = [{"role": "system", "content": system_prompt}]
    chat += [{"role": "user" if t["role"] == "customer" else "assistant", "content": t["text"]} for t in turns]
    return chat


def render(tokenizer, system_prompt: str, conv: dict, max_len: int) -> Example | None:
    """Token ids with labels on the trainable agent turns; None when nothing is left to learn."""
    turns = conv["turns"]
    full = tokenizer.apply_chat_template(_chat(system_prompt, turns), tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    labels = [IGNORE] * len(ids)
    for k, turn in enumerate(turns):
        if turn["role"] != "agent" or not turn["train"]:
            continue
        prefix = tokenizer.apply_chat_template(_chat(system_prompt, turns[:k]), tokenize=False,
                                               add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(_chat(system_prompt, turns[: k + 1]), tokenize=False)
        start = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
        end = len(tokenizer(upto, add_special_tokens=False)["input_ids"])
        labels[start:end] = ids[start:end]
    ids, labels = ids[:max_len], labels[:max_len]
    if all(x == IGNORE for x in labels):
        return None
    return Example(conv["conversation_id"], ids, labels)


def build_examples(tokenizer, system_prompt: str, convs: list[dict], max_len: int) -> list[Example]:
    return [ex for c in convs if (ex := render(tokenizer, system_prompt, c, max_len)) is not None]


def collate(batch: list[Example], pad_id: int):
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
