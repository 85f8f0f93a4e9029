from __future__ import annotations

from fastapi import APIRouter

from replyloop.serving.deps import ApiKeyDep, ServiceDep
from replyloop.serving.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackResponse, status_code=202,
             responses={404: {"description": "Unknown reply id"}, 422: {"description": "Invalid rating or correction"}})
async def create_feedback(body: FeedbackRequest, service: ServiceDep, _key: ApiKeyDep) -> dict:
    """A rating (and optional correction) of a served reply, stored for the next ingestion."""
    return await service.feedback(body)
