"""Erasure requests: everything the tenant holds about one subject (tenant admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from twinlens.api.deps import AdminKeyDep, BlobsDep, SessionDep
from twinlens.api.problems import problem_responses
from twinlens.services import erasure

router = APIRouter(prefix="/v1", tags=["subjects"], responses=problem_responses(400, 401, 403, 422))


class SubjectErasure(BaseModel):
    subject_ref: str
    jobs: int = Field(description="Jobs deleted (every status, queued and running ones too)")
    results: int
    feedback: int
    webhook_deliveries: int = Field(description="Webhook deliveries deleted, with their attempt logs")
    blobs: int = Field(description="Stored images deleted (an image another job still uses is kept)")
    embeddings: int = Field(0, description="Case vectors of similar-case search deleted (with the index files holding them)")
    batch_rows: int = Field(0, description="Rows of bulk scoring batches deleted (their inputs and answers)")


@router.delete(
    "/subjects/{subject_ref:path}", response_model=SubjectErasure,
    summary="Erase every job, result, feedback, image and webhook payload of one subject (admin)",
    # 404: a path with a line break in it matches no route (no subject reference has one).
    responses=problem_responses(404),
)
def erase_subject(
    subject_ref: Annotated[str, Path(min_length=1, max_length=erasure.MAX_SUBJECT_REF_CHARS, pattern=erasure.SUBJECT_REF_PATTERN,
                                     description="The metadata.subject_ref the jobs were sent with, URL-encoded")],
    principal: AdminKeyDep,
    session: SessionDep,
    blobs: BlobsDep,
) -> SubjectErasure:
    erased = erasure.erase_subject(session, blobs, principal, subject_ref)
    return SubjectErasure(subject_ref=subject_ref, **erased.of_jobs())
