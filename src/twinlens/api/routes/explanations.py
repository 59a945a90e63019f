"""Why a job's result is what it is: the stored explanation and its heatmap overlays."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from twinlens.api.deps import PRINTABLE_PATTERN, ApiKeyDep, BlobsDep, SessionDep
from twinlens.api.problems import problem_responses
from twinlens.services import explanations
from twinlens.services.views import ExplanationView

router = APIRouter(prefix="/v1", tags=["explanations"], responses=problem_responses(400, 401, 422))


@router.get(
    "/jobs/{job_id}/explanation", response_model=ExplanationView, summary="A job's explanation: heatmaps and word weights",
    responses=problem_responses(404),
)
def get_explanation(job_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep) -> ExplanationView:
    return explanations.get_explanation(session, principal, job_id)


@router.get(
    "/jobs/{job_id}/heatmap.png",
    response_class=Response,
    summary="A head's heatmap drawn over the job's input image",
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "PNG: the input image tinted where the evidence for the head's label lies"},
               **problem_responses(404)},
)
def get_heatmap(
    job_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep, blobs: BlobsDep,
    head: Annotated[str, Query(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN, description="The head (task) whose heatmap to draw")],
    image: Annotated[str | None, Query(min_length=1, max_length=100, pattern=PRINTABLE_PATTERN, description=(
        "A job of several images: which one (its view, e.g. lateral, or \"image 2\"); default: the image "
        "that mattered most"))] = None,
) -> Response:
    png = explanations.heatmap_overlay(session, blobs, principal, job_id, head, image)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})
