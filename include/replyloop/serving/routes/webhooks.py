from __future__ import annotations

import time

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from replyloop.serving.deps import ServiceDep
from replyloop.serving.schemas import WebhookEvent
from replyloop.serving.security import SignatureError, verify_signature

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
_EVENT = TypeAdapter(WebhookEvent)


@router.post("/{platform}", responses={401: {"description": "Bad, stale or missing signature"},
                                       404: {"description": "No webhook secret for this platform"},
                                       409: {"description": "Replayed delivery"}})
async def platform_event(platform: str, request: Request, service: ServiceDep,
                         x_replyloop_timestamp: str | None = Header(None),
                         x_replyloop_signature: str | None = Header(None)):
    """Signed platform events: `message.created` (answered like /v1/replies) or `reply.rated` (feedback)."""
    secret = request.app.state.webhook_secrets.get(platform.lower())
    if secret is None:
        raise HTTPException(404, f"no webhook is configured for platform {platform[:50]!r}")
    body = await request.body()
    settings = service.settings
    now = time.time()
    try:
        verify_signature(secret, x_replyloop_timestamp, x_replyloop_signature, body, now=now,
                         tolerance=settings.webhook_tolerance_seconds)
    except SignatureError as exc:
        raise HTTPException(401, f"webhook refused: {exc}") from None
    try:
        event = _EVENT.validate_json(body)
    except ValidationError as exc:
        raise HTTPException(422, "webhook event: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))) from None
    signature = x_replyloop_signature.strip()
    if not service.log.index.first_delivery(platform, signature, int(x_replyloop_timestamp),
                                            int(now) - settings.webhook_tolerance_seconds):
        raise HTTPException(409, "webhook refused: this delivery was already received (replay)")
    try:
        if event.type == "message.created":
            return await service.reply(event.conversation.model_copy(update={"platform": platform.lower()}))
        return JSONResponse(await service.feedback(event.feedback), status_code=202)
    except Exception:  # refused (422, 404, 503): not received, so the platform's retry is no replay
        service.log.index.forget_delivery(signature)
        raise
