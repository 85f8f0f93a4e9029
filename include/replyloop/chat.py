"""The one chat builder: a conversation becomes model input here, for training AND inference.

A conversation is one customer message (a str) or a list of turns `{"role": "customer"|"agent", "text": str}`.
It is rendered with the base model's own chat template: the system prompt, customer turns as `user`, agent
turns as `assistant`, leading @mentions / [HANDLE] stripped (`replyloop.text.strip_leading_mentions`), and
a redacted greeting name dropped ("Hi [NAME], sorry" -> "Hi, sorry"; `replyloop.pii.drop_greeting_placeholder`),
so a model neither learns nor produces the placeholder.

Long conversations lose whole OLDEST turns; the system prompt and the last turn are always kept, so a
prompt keeps the customer's latest message and a training example keeps the agent reply it teaches.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass

from replyloop.pii import drop_greeting_placeholder
from replyloop.text import strip_leading_mentions

Turn = dict  # {"role": "customer" | "agent", "text": str}
_ROLES = {"customer": "user", "agent": "assistant"}


class ChatError(ValueError):
    """A conversation cannot be rendered (unknown role, empty)."""


def chat_messages(conversation: str | list[Turn], system_prompt: str) -> list[dict]:
    """[{"role": "system"|"user"|"assistant", "content": str}] for the chat template."""
    turns = [{"role": "customer", "text": conversation}] if isinstance(conversation, str) else conversation
    if not turns:
        raise ChatError("empty conversation: at least one turn is needed")
    out = [{"role": "system", "content": system_prompt}]
    for i, t in enumerate(turns):
        role = _ROLES.get(t["role"])
        if role is None:
            raise ChatError(f"turn {i}: role {t['role']!r} is neither 'customer' nor 'agent'")
        out.append({"role": role, "content": drop_greeting_placeholder(strip_leading_mentions(t["text"]))})
    return out


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tokenizer, conversation: str | list[Turn], system_prompt: str, max_len: int) -> list[int]:
    """Chat template + generation prompt as token ids, at most `max_len` of them.

    When too long, whole oldest turns are dropped (system prompt and last turn always kept). If the system
    prompt and the last turn alone do not fit, the last turn keeps its END (the newest words)."""
    messages = chat_messages(conversation, system_prompt)
    system, turns = messages[:1], messages[1:]
    for first in range(len(turns)):
        ids = _encode(tokenizer, _render(tokenizer, system + turns[first:], True))
        if len(ids) <= max_len:
            return ids
    last = dict(turns[-1])
    overflow = len(ids) - max_len
    content = _encode(tokenizer, last["content"])
    if overflow >= len(content):
        raise ChatError(f"the system prompt alone does not fit in {max_len} tokens")
    last["content"] = tokenizer.decode(content[overflow + 1:])
    return _encode(tokenizer, _render(tokenizer, system + [last], True))[-max_len:]


def template_sha(tokenizer) -> str:
    """sha256 of the tokenizer's chat template text (a dict of named templates is hashed as sorted JSON)."""
    template = tokenizer.chat_template
    if template is None:
        raise ChatError("the tokenizer has no chat template")
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    """Token ids of a rendered chat and, per message, where it lies in them.

    `spans[k] = (start, content_start, end)`: message k occupies ids[start:end]; for an assistant message
    ids[content_start:end] is what the model writes after the generation prompt (its text and end token)."""
    ids: list[int]
    spans: list[tuple[int, int, int]]


def render_with_spans(tokenizer, messages: list[dict]) -> Rendered:
    """Tokenise the whole chat once and locate each message through character offsets of its prefixes."""
    text = _render(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [a for a, _ in enc["offset_mapping"]]

    def token_at(char: int) -> int:
        return bisect.bisect_left(starts, char)

    spans, prev_end = [], 0
    for k in range(len(messages)):
        end = token_at(len(_render(tokenizer, messages[: k + 1]))) if k + 1 < len(messages) else len(starts)
        content = (token_at(len(_render(tokenizer, messages[:k], True)))
                   if messages[k]["role"] == "assistant" and k > 0 else prev_end)
        spans.append((prev_end, content, end))
        prev_end = end
    return Rendered(list(enc["input_ids"]), spans)
