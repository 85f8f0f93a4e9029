"""FastAPI dependencies as Annotated aliases; tests swap them through `app.dependency_overrides`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from replyloop.lake import Lake
from replyloop.serving.feedback_sink import ExchangeLog
from replyloop.serving.model_store import LoadedModel


def get_model(request: Request) -> LoadedModel:
    model = request.app.state.store.current
    if model is None:
        raise HTTPException(status_code=503, detail="no champion model is loaded yet")
    return model


def get_lake(request: Request) -> Lake:
    return request.app.state.lake


def get_exchanges(request: Request) -> ExchangeLog:
    return request.app.state.exchanges


ModelDep = Annotated[LoadedModel, Depends(get_model)]
LakeDep = Annotated[Lake, Depends(get_lake)]
ExchangesDep = Annotated[ExchangeLog, Depends(get_exchanges)]
