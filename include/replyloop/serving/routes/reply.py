from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from replyloop.serving.deps import ExchangesDep, ModelDep
from replyloop.serving.feedback_sink import new_id, now_iso

router = APIRouter(prefix="/v1", tags=["reply"])
# Sent when the model produces nothing usable; the platform never posts an empty reply.
FALLBACK_REPLY = "Thanks for reaching out! Please send us a DM so we can look into this for you."


class Turn(BaseModel):
    role: Literal["customer", "agent"]
    text: str = Field(min_length=1, max_length=4000)


class ReplyRequest(BaseModel):
    conversation_id: str | None = Field(None, max_length=200)
    text: str | None = Field(None, min_length=1, max_length=4000, description="A single customer message")
    messages: list[Turn] | None = Field(None, max_length=50, description="The conversation so far")
    channel: Literal["public_reply", "direct_message"] = "public_reply"

    @model_validator(mode="after")
    def one_input(self):
        if (self.text is None) == (self.messages is None):
            raise ValueError("give exactly one of 'text' or 'messages'")
        if self.messages is not None and self.messages[-1].role != "customer":
            raise ValueError("the last message must be the customer's")
        return self


class ReplyResponse(BaseModel):
    conversation_id: str
    message_id: str
    reply: str
    model_version: str
    fallback: bool = Field(False, description="True when the model gave no usable text and the canned reply was sent")


@router.post("/reply", response_model=ReplyResponse)
async def reply(body: ReplyRequest, model: ModelDep, exchanges: ExchangesDep) -> ReplyResponse:
    turns = [t.model_dump() for t in body.messages] if body.messages else [{"role": "customer", "text": body.text}]
    text = (await run_in_threadpool(model.generator.reply, [turns]))[0].strip()
    fallback = not text
    text = text or FALLBACK_REPLY
    conv_id = body.conversation_id or new_id("api")
    message_id = new_id("m")
    stamp = now_iso()
    conversation = {
        "conversation_id": conv_id, "platform": "api", "channel": body.channel, "created_at": stamp,
        "messages": [{"message_id": f"{message_id}-in{i}", "role": t["role"], "author_id": t["role"],
                      "text": t["text"], "created_at": stamp} for i, t in enumerate(turns)]
        + [{"message_id": message_id, "role": "agent", "author_id": f"model-v{model.version}", "text": text,
            "created_at": stamp}],
    }
    exchanges.remember(conversation, message_id)
    return ReplyResponse(conversation_id=conv_id, message_id=message_id, reply=text, model_version=model.version,
                         fallback=fallback)
