"""The FastAPI app: wiring only. The model loads in the background; `/readyz` says when it is served."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from replyloop.lake import lake_for
from replyloop.serving.batcher import MicroBatcher, QueueFull
from replyloop.serving.bodyguard import BodyGuard
from replyloop.serving.metrics import MetricsMiddleware, ServingMetrics
from replyloop.serving.model_store import ModelStore
from replyloop.serving.ratelimit import RateLimiter
from replyloop.serving.replylog import ReplyIndex, ReplyLog, ReplyLogError
from replyloop.serving.routes import feedback, health, replies, webhooks
from replyloop.serving.security import ApiKeys, webhook_secrets
from replyloop.serving.service import BadConversation, Guard, NotReady, ReplyService, UnknownReply
from replyloop.settings import Settings, get_settings

log = logging.getLogger(__name__)


async def follow_alias(store: ModelStore, metrics: ServingMetrics, every: float) -> None:
    """Load the alias's version now, then follow the alias: a promotion or rollback is live within `every` s.
    After a failed lookup the next one comes sooner (1 s, doubling up to `every`)."""
    wait = every
    while True:
        try:
            await asyncio.to_thread(store.refresh)
            wait = every
        except Exception as exc:  # keep serving whatever is loaded, whatever the registry does
            log.error("alias refresh failed (%s); still serving %s", type(exc).__name__,
                      store.current and store.current.version)
            wait = min(every, 1.0 if wait >= every else wait * 2)
        current = store.current
        metrics.served(current and current.version, current and current.engine.name)
        await asyncio.sleep(wait)


def _start(app: FastAPI, settings: Settings, loader) -> None:
    from replyloop.evaluation.judge import get_judge

    s = app.state
    s.api_keys = ApiKeys.load(settings)
    s.webhook_secrets = webhook_secrets(settings)
    s.limiter = RateLimiter(settings.serve_rate_per_minute, settings.serve_rate_burst)
    s.store = ModelStore(settings, **({"loader": loader} if loader else {}))
    index = ReplyIndex(settings.reply_index or settings.home / "serving" / "replies.sqlite")
    s.replylog = ReplyLog(lake_for(settings), index)
    guard = Guard(get_judge(settings), settings.fallback_reply)
    s.batcher = MicroBatcher(max_batch=settings.serve_max_batch, wait_ms=settings.serve_batch_wait_ms,
                             max_wait_ms=settings.serve_batch_max_wait_ms,
                             await_returning=settings.serve_batch_await_returning,
                             max_queue=settings.serve_max_queue, guard=guard,
                             on_batch=lambda engine, size, secs: s.metrics.batch.observe(size))
    s.service = ReplyService(settings, s.store, s.batcher, s.replylog, s.metrics)


def _stop(app: FastAPI) -> None:
    app.state.batcher.close()
    app.state.replylog.close()  # flushes every record still queued
    app.state.replylog.index.close()


def _error_handlers(app: FastAPI) -> None:
    def json(status: int, detail: str, **headers) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return json(422, "; ".join(parts))

    app.add_exception_handler(BadConversation, lambda r, e: json(422, str(e)))
    app.add_exception_handler(UnknownReply, lambda r, e: json(404, str(e)))
    app.add_exception_handler(NotReady, lambda r, e: json(503, f"not ready: {e}", **{"Retry-After": "5"}))
    app.add_exception_handler(QueueFull, lambda r, e: json(503, f"overloaded: {e}", **{"Retry-After": "1"}))
    app.add_exception_handler(ReplyLogError, lambda r, e: json(503, "the reply could not be stored; nothing was "
                                                                   "served, retry later"))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s: %s", error_id, request.url.path, type(exc).__name__)
        return json(500, f"internal error (id {error_id})")


def create_app(settings: Settings | None = None, *, loader=None) -> FastAPI:
    """`loader(settings, version) -> Engine` replaces the registry+engine loading (tests)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _start(app, settings, loader)
        follower = asyncio.create_task(follow_alias(app.state.store, app.state.metrics, settings.alias_poll_seconds))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await asyncio.to_thread(_stop, app)

    app = FastAPI(title="replyloop", version="2", lifespan=lifespan,
                  description="Replies from the champion model for the social platform; feedback flows into the "
                              "next ingestion. Authenticate with `X-API-Key` (see docs/api.md).")
    app.state.metrics = ServingMetrics()
    for router in (health.router, replies.router, feedback.router, webhooks.router):
        app.include_router(router)
    _error_handlers(app)
    app.add_middleware(BodyGuard, max_bytes=settings.serve_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, fastapi_app=app)
    return app
