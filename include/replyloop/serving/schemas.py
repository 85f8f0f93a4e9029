"""Request and response bodies of the API (shapes only; limits from settings are checked in service.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@/+=-]+$")]


class Message(BaseModel):
    role: Literal["customer", "agent"]
    text: str
    message_id: Id | None = None
    author_id: Id | None = None
    created_at: datetime | None = None


class ReplyRequest(BaseModel):
    """The conversation so far (oldest first; the last message is the customer's), or one `text`."""

    conversation_id: Id | None = None
    platform: Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[a-z0-9_-]+$")] = "api"
    channel: Literal["public_reply", "direct_message"] = "public_reply"
    messages: list[Message] | None = None
    text: str | None = Field(None, description="Shorthand for one customer message")


class ReplyResponse(BaseModel):
    reply_id: str = Field(description="Send it back with feedback, however much later")
    conversation_id: str
    reply: str
    model_version: str
    fallback: bool = Field(description="True when the generated reply failed a check and the safe reply was sent")


class FeedbackRequest(BaseModel):
    reply_id: Id
    rating: Literal["up", "down"]
    correction: str | None = Field(None, description="A better reply; trained on in the next fine-tune")


class FeedbackResponse(BaseModel):
    event_id: str
    reply_id: str
    model_version: str


class MessageEvent(BaseModel):
    type: Literal["message.created"]
    conversation: ReplyRequest


class RatingEvent(BaseModel):
    type: Literal["reply.rated"]
    feedback: FeedbackRequest


WebhookEvent = Annotated[MessageEvent | RatingEvent, Field(discriminator="type")]
