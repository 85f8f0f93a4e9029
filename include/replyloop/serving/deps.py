"""FastAPI dependencies as Annotated aliases; tests swap them through `app.dependency_overrides`."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from replyloop.serving.service import ReplyService

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from `replyloop api-key create`")
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token")


def get_service(request: Request) -> ReplyService:
    return request.app.state.service


def api_key(request: Request, header: Annotated[str | None, Security(_header)] = None,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None) -> str:
    """The caller's key name: 401 without a valid key, 429 over the key's rate."""
    key = header or (bearer.credentials if bearer else None)
    name = request.app.state.api_keys.name_of(key)
    if name is None:
        raise HTTPException(401, "missing or invalid API key (send it as X-API-Key or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    wait = request.app.state.limiter.take(name)
    if wait > 0:
        raise HTTPException(429, "rate limit exceeded for this API key; retry later",
                            headers={"Retry-After": str(math.ceil(wait))})
    return name


ServiceDep = Annotated[ReplyService, Depends(get_service)]
ApiKeyDep = Annotated[str, Depends(api_key)]
