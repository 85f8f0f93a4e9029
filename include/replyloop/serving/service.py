"""The reply and feedback logic behind the routes (no FastAPI here).

reply: check the conversation -> micro-batched generation on the model admitted with the request ->
PII check (`pii.check_reply`) and safety judge on the generated text, else the safe fallback reply ->
durable record in raw/replies (docs/data-contract.md) -> answer.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from replyloop.contract import SERVED_AUTHOR_PREFIX
from replyloop.pii import check_reply
from replyloop.serving.batcher import MicroBatcher
from replyloop.serving.metrics import ServingMetrics
from replyloop.serving.model_store import ModelStore
from replyloop.serving.replylog import ReplyLog
from replyloop.serving.schemas import FeedbackRequest, Message, ReplyRequest
from replyloop.settings import Settings


class BadConversation(ValueError):
    """422: the message says what is wrong and where."""


class NotReady(RuntimeError):
    """503: no model is being served; the message says why."""


class UnknownReply(LookupError):
    """404: feedback names a reply id this service never served."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_conversation(body: ReplyRequest, settings: Settings) -> list[dict]:
    """The turns to answer, or BadConversation naming the problem."""
    if (body.text is None) == (body.messages is None):
        raise BadConversation("give exactly one of 'text' (one customer message) or 'messages' (the conversation)")
    msgs = body.messages if body.messages is not None else [Message(role="customer", text=body.text)]
    if not msgs:
        raise BadConversation("'messages' is empty: send at least the customer's message")
    if len(msgs) > settings.serve_max_turns:
        raise BadConversation(f"'messages' has {len(msgs)} turns; at most {settings.serve_max_turns} are accepted")
    for i, m in enumerate(msgs):
        if not m.text.strip():
            raise BadConversation(f"messages[{i}].text is empty or only whitespace")
        if len(m.text) > settings.max_message_chars:
            raise BadConversation(f"messages[{i}].text has {len(m.text)} characters; at most "
                                  f"{settings.max_message_chars} are accepted")
    if msgs[-1].role != "customer":
        raise BadConversation(f"the last message (messages[{len(msgs) - 1}]) is the agent's; "
                              "a reply is asked for after a customer message")
    return [{"role": m.role, "text": m.text, "message_id": m.message_id, "author_id": m.author_id,
             "created_at": _iso(m.created_at)} for m in msgs]


@dataclass
class Guard:
    """Every generated reply passes the PII check and the safety judge, or the fallback is sent."""

    judge: object
    fallback: str

    def __call__(self, texts: list[str], prompts: list[list[str]]) -> list[tuple[str, str | None]]:
        verdicts = self.judge.judge(texts, [p[-1] for p in prompts])
        out = []
        for text, prompt, verdict in zip(texts, prompts, verdicts, strict=True):
            if not text.strip():
                out.append((self.fallback, "empty"))
            elif check_reply(text, prompt=prompt):
                out.append((self.fallback, "pii"))
            elif not verdict.safe:
                out.append((self.fallback, "unsafe"))
            else:
                out.append((text, None))
        return out


class ReplyService:
    def __init__(self, settings: Settings, store: ModelStore, batcher: MicroBatcher, log: ReplyLog,
                 metrics: ServingMetrics):
        self.settings = settings
        self.store = store
        self.batcher = batcher
        self.log = log
        self.metrics = metrics

    async def reply(self, body: ReplyRequest) -> dict:
        started = time.perf_counter()
        turns = check_conversation(body, self.settings)
        loaded = self.store.current
        if loaded is None:
            raise NotReady(self.store.not_ready or "no model is loaded")
        generated, text, reason = await self.batcher.generate(loaded, [{"role": t["role"], "text": t["text"]}
                                                                       for t in turns])
        self.metrics.tokens.labels(engine=loaded.engine.name).inc(generated.tokens)
        if reason:
            self.metrics.fallbacks.labels(reason=reason).inc()
        reply_id = f"r-{uuid.uuid4().hex}"
        stamp = now_iso()
        conversation_id = body.conversation_id or f"api-{uuid.uuid4().hex[:20]}"
        messages = [{"message_id": t["message_id"] or f"{reply_id}-in{i}", "role": t["role"], "text": t["text"],
                     "author_id": t["author_id"] or t["role"], "created_at": t["created_at"] or stamp}
                    for i, t in enumerate(turns)]
        messages.append({"message_id": reply_id, "role": "agent", "text": text, "created_at": stamp,
                         "author_id": f"{SERVED_AUTHOR_PREFIX}v{loaded.version}"})
        record = {"conversation_id": conversation_id, "platform": body.platform, "channel": body.channel,
                  "created_at": messages[0]["created_at"], "messages": messages, "reply_id": reply_id,
                  "model_version": loaded.version, "fallback": reason is not None, "fallback_reason": reason,
                  "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
        await self.log.write("replies", record, day=stamp[:10])
        return {"reply_id": reply_id, "conversation_id": conversation_id, "reply": text,
                "model_version": loaded.version, "fallback": reason is not None}

    async def feedback(self, body: FeedbackRequest) -> dict:
        if body.correction is not None and not body.correction.strip():
            raise BadConversation("correction is empty or only whitespace; leave it out or send the better reply")
        if body.correction is not None and len(body.correction) > self.settings.max_message_chars:
            raise BadConversation(f"correction has {len(body.correction)} characters; at most "
                                  f"{self.settings.max_message_chars} are accepted")
        served = self.log.index.get(body.reply_id)
        if served is None:
            raise UnknownReply(f"unknown reply id {body.reply_id!r}: this service never served it")
        event = {"event_id": f"f-{uuid.uuid4().hex}", "conversation_id": served["conversation_id"],
                 "message_id": body.reply_id, "rating": body.rating, "correction": body.correction,
                 "model_version": served["model_version"], "created_at": now_iso()}
        await self.log.write("feedback", event, day=event["created_at"][:10])
        return {"event_id": event["event_id"], "reply_id": body.reply_id, "model_version": served["model_version"]}
