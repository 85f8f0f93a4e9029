from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; `reason` says why"}})
def readyz(request: Request, response: Response) -> dict:
    """Readiness: a model version is loaded and served."""
    store = request.app.state.store
    current = store.current
    if current is None:
        response.status_code = 503
        return {"status": "not ready", "reason": store.not_ready, "alias": store.alias}
    return {"status": "ready", "alias": store.alias, "model_version": current.version, "engine": current.engine.name}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    m = request.app.state.metrics
    m.queue_depth.set(request.app.state.batcher.depth())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
