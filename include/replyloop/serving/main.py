"""The FastAPI app: loads the alias's model in lifespan and follows the alias while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from replyloop.lake import lake_for
from replyloop.serving.feedback_sink import ExchangeLog
from replyloop.serving.model_store import ModelStore, NoModelError
from replyloop.serving.routes import feedback, health, reply
from replyloop.settings import Settings, get_settings

log = logging.getLogger(__name__)


async def _follow_alias(store: ModelStore, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(store.refresh)
        except Exception:  # keep serving the loaded model whatever the registry does
            log.exception("alias refresh failed; still serving v%s", store.current and store.current.version)


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.store = store or ModelStore(settings, alias=settings.serve_alias)
        app.state.lake = lake_for(settings)
        app.state.exchanges = ExchangeLog()
        try:
            await asyncio.to_thread(app.state.store.load)
        except NoModelError as exc:
            log.warning("starting without a model: %s", exc)
        follower = asyncio.create_task(_follow_alias(app.state.store, settings.alias_poll_seconds))
        yield
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

    app = FastAPI(title="replyloop", version="1", lifespan=lifespan,
                  description="Replies from the champion model; feedback flows into the next ingestion.")
    app.include_router(health.router)
    app.include_router(reply.router)
    app.include_router(feedback.router)
    return app
