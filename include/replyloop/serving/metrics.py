"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("replyloop_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("replyloop_request_seconds", "Request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("replyloop_generated_tokens", "Tokens generated", ["engine"], registry=r)
        self.queue_depth = Gauge("replyloop_queue_depth", "Requests waiting for or in the engine", registry=r)
        self.model = Gauge("replyloop_served_model", "1 for the model version (and engine) being served",
                           ["version", "engine"], registry=r)
        self.fallbacks = Counter("replyloop_fallbacks", "Replies replaced by the safe fallback", ["reason"],
                                 registry=r)
        self.batch = Histogram("replyloop_batch_size", "Requests per engine call", buckets=(1, 2, 4, 8, 16, 32, 64),
                               registry=r)

    def served(self, version: str | None, engine: str | None) -> None:
        self.model.clear()
        if version:
            self.model.labels(version=version, engine=engine).set(1)


def _route_of(app, scope) -> str:
    route = scope.get("route")
    if route is None:
        for candidate in app.router.routes:
            if candidate.matches(scope)[0] == Match.FULL:
                route = candidate
                break
    return getattr(route, "path", "unmatched")


class MetricsMiddleware:
    """Counts every response, also those refused before routing (413/422 from BodyGuard)."""

    def __init__(self, app, metrics: ServingMetrics, fastapi_app):
        self.app = app
        self.metrics = metrics
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_of(self.fastapi_app, scope)
            self.metrics.requests.labels(route=route, status=str(status["code"])).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
