from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, response: Response) -> dict:
    current = request.app.state.store.current
    if current is None:
        response.status_code = 503
        return {"status": "no model", "alias": request.app.state.store.alias}
    return {"status": "ready", "alias": request.app.state.store.alias, "model_version": current.version}
