from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from replyloop.lake import LakeError
from replyloop.serving.deps import ExchangesDep, LakeDep
from replyloop.serving.feedback_sink import new_id, now_iso, write_feedback

router = APIRouter(prefix="/v1", tags=["feedback"])


class FeedbackRequest(BaseModel):
    conversation_id: str = Field(min_length=1, max_length=200)
    message_id: str = Field(min_length=1, max_length=200)
    rating: Literal["up", "down"]
    correction: str | None = Field(None, min_length=1, max_length=4000)
    model_version: str | None = None


class FeedbackResponse(BaseModel):
    event_id: str
    stored_at: str
    conversation_known: bool


@router.post("/feedback", response_model=FeedbackResponse, status_code=202)
async def feedback(body: FeedbackRequest, lake: LakeDep, exchanges: ExchangesDep) -> FeedbackResponse:
    conversation = exchanges.get(body.conversation_id, body.message_id)
    version = body.model_version
    if version is None and conversation is not None:
        version = conversation["messages"][-1]["author_id"].removeprefix("model-v")
    event = {"event_id": new_id("f"), "conversation_id": body.conversation_id, "message_id": body.message_id,
             "rating": body.rating, "correction": body.correction, "model_version": version, "created_at": now_iso()}
    try:
        key = await run_in_threadpool(write_feedback, lake, event, conversation)
    except LakeError as exc:
        raise HTTPException(status_code=503, detail=f"feedback could not be stored: {exc}") from exc
    return FeedbackResponse(event_id=event["event_id"], stored_at=lake.url(key), conversation_known=conversation is not None)
