from __future__ import annotations

from fastapi import APIRouter

from replyloop.serving.deps import ApiKeyDep, ServiceDep
from replyloop.serving.schemas import ReplyRequest, ReplyResponse

router = APIRouter(prefix="/v1", tags=["replies"])
_ERRORS = {401: {"description": "No valid API key"}, 413: {"description": "Body over the limit"},
           422: {"description": "Malformed conversation (the message says what)"},
           429: {"description": "Rate limit of the key"}, 503: {"description": "No model served yet, or overloaded"}}


@router.post("/replies", response_model=ReplyResponse, responses=_ERRORS)
async def create_reply(body: ReplyRequest, service: ServiceDep, _key: ApiKeyDep) -> dict:
    """The champion's reply to the conversation so far; stored durably with its id and model version."""
    return await service.reply(body)


@router.post("/reply", response_model=ReplyResponse, responses=_ERRORS, deprecated=True)
async def create_reply_alias(body: ReplyRequest, service: ServiceDep, _key: ApiKeyDep) -> dict:
    """Deprecated alias of POST /v1/replies (kept for platforms written against the first API)."""
    return await service.reply(body)
