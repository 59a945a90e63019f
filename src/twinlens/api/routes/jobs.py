"""Jobs: submit, read, list, cancel, delete, feedback, webhook deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from twinlens.api.deps import ApiKeyDep, BlobsDep, DatabaseDep, PageDep, PluginDep, SessionDep, SettingsDep, PluginFilter
from twinlens.api.job_requests import read_job_request
from twinlens.api.openapi_docs import JOB_REQUEST_BODY
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import FeedbackCreate
from twinlens.db.models import FINISHED_STATUSES
from twinlens.services import jobs, webhooks
from twinlens.services.submission import JobSubmission, submit_job_request
from twinlens.services.views import (
    DeliveryList,
    FeedbackList,
    FeedbackView,
    JobList,
    JobStatus,
    JobView,
    delivery_view,
    feedback_view,
    job_view,
)

router = APIRouter(prefix="/v1", tags=["jobs"], responses=problem_responses(400, 401, 422))
JobId = Annotated[uuid.UUID, "job id"]
MAX_WAIT_QUERY = 600.0


@router.post(
    "/plugins/{name}/jobs",
    status_code=202,
    response_model=JobView,
    summary="Submit a job",
    openapi_extra=JOB_REQUEST_BODY,
    responses={
        200: {"model": JobView, "description": "The job finished within ?wait= seconds"},
        202: {"description": "Accepted; poll the Location header", "headers": {"Location": {"schema": {"type": "string"}}}},
        **problem_responses(400, 404, 409, 413, 415),
    },
)
async def create_job(
    request: Request,
    response: Response,
    plugin: PluginDep,
    principal: ApiKeyDep,
    session: SessionDep,
    db: DatabaseDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_QUERY, description="Seconds to wait for the result (capped by the server)")] = 0,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)] = None,
    explain: Annotated[bool, Query(description="Also explain the result (heatmaps, word weights) when it needs no review")] = False,
) -> JobView:
    inputs = await read_job_request(request, plugin, settings)
    submission = JobSubmission(plugin=plugin, inputs=inputs, idempotency_key=idempotency_key, explain=explain)
    submitted = await submit_job_request(session, db, blobs, settings, principal, submission, wait_seconds=wait)
    if not submitted.created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{submitted.job.id}"
    if submitted.job.status in FINISHED_STATUSES:
        response.status_code = 200
    return submitted.job


@router.get("/jobs/{job_id}", response_model=JobView, summary="Get a job and its result", responses=problem_responses(404))
def get_job(job_id: JobId, principal: ApiKeyDep, session: SessionDep) -> JobView:
    return job_view(jobs.get_job(session, principal, job_id))


@router.get("/jobs", response_model=JobList, summary="List jobs, newest first")
def list_jobs(
    principal: ApiKeyDep,
    session: SessionDep,
    page: PageDep,
    plugin: PluginFilter = None,
    status: JobStatus | None = None,
) -> JobList:
    jobs_page, next_cursor = jobs.list_jobs(session, principal, page, plugin=plugin, status=status)
    return JobList(data=[job_view(job) for job in jobs_page], next_cursor=next_cursor)


@router.post("/jobs/{job_id}/cancel", response_model=JobView, summary="Cancel a queued job", responses=problem_responses(404, 409))
def cancel_job(job_id: JobId, principal: ApiKeyDep, session: SessionDep) -> JobView:
    return job_view(jobs.cancel_job(session, principal, job_id))


@router.delete("/jobs/{job_id}", status_code=204, summary="Delete a job and purge its inputs now", responses=problem_responses(404))
def delete_job(job_id: JobId, principal: ApiKeyDep, session: SessionDep, blobs: BlobsDep) -> Response:
    jobs.delete_job(session, blobs, principal, job_id)
    return Response(status_code=204)


@router.post(
    "/jobs/{job_id}/feedback", status_code=201, response_model=FeedbackView, summary="Correct a job's labels",
    responses=problem_responses(404),
)
def add_feedback(job_id: JobId, body: FeedbackCreate, principal: ApiKeyDep, session: SessionDep) -> FeedbackView:
    feedback = jobs.add_feedback(session, principal, job_id, body.labels, comment=body.comment, author=body.author)
    return feedback_view(feedback)


@router.get("/jobs/{job_id}/feedback", response_model=FeedbackList, summary="A job's corrections", responses=problem_responses(404))
def list_feedback(job_id: JobId, principal: ApiKeyDep, session: SessionDep) -> FeedbackList:
    return FeedbackList(data=[feedback_view(f) for f in jobs.list_feedback(session, principal, job_id)])


@router.get(
    "/jobs/{job_id}/deliveries", response_model=DeliveryList, summary="A job's webhook deliveries and attempts",
    responses=problem_responses(404),
)
def list_deliveries(job_id: JobId, principal: ApiKeyDep, session: SessionDep) -> DeliveryList:
    return DeliveryList(data=[delivery_view(d) for d in webhooks.deliveries_for_job(session, principal, job_id)])
