"""Jobs: submit, read, list, cancel, delete, feedback, webhook deliveries."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinlens.api.deps import ApiKeyDep, BlobsDep, DatabaseDep, PageDep, PluginDep, SessionDep, SettingsDep
from twinlens.api.job_requests import fetch_url_image, read_job_request
from twinlens.api.openapi_docs import JOB_REQUEST_BODY
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import FeedbackCreate
from twinlens.blobs import LocalBlobStore
from twinlens.contract.plugin import Plugin
from twinlens.db.models import FINISHED_STATUSES
from twinlens.db.session import Database
from twinlens.services import jobs, webhooks
from twinlens.services.inputs import SubmittedInputs, request_fingerprint, validate_inputs
from twinlens.services.keys import Principal
from twinlens.services.netguard import check_url
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
from twinlens.settings import Settings

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
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> JobView:
    submitted, url = await read_job_request(request, plugin, settings)
    if url is not None:
        await run_in_threadpool(fetch_url_image, submitted, url, settings)
    view, created = await run_in_threadpool(_submit, session, blobs, principal, plugin, submitted, settings, idempotency_key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    if wait and view.status not in FINISHED_STATUSES:
        view = await _wait_for(db, principal, view.id, min(wait, settings.max_wait_seconds)) or view
    response.headers["Location"] = f"/v1/jobs/{view.id}"
    if view.status in FINISHED_STATUSES:
        response.status_code = 200
    return view


def _submit(
    session: Session, blobs: LocalBlobStore, principal: Principal, plugin: Plugin,
    submitted: SubmittedInputs, settings: Settings, idempotency_key: str | None,
) -> tuple[JobView, bool]:
    raw = validate_inputs(plugin, submitted, settings)
    if submitted.webhook_url:
        check_url(submitted.webhook_url, field="webhook_url", allow_private=settings.allow_private_webhooks)
    request = jobs.JobRequest(
        plugin=plugin.name,
        raw=plugin.sanitize(raw),  # what must never be stored is removed before storing
        webhook_url=submitted.webhook_url,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(plugin.name, raw, submitted.webhook_url),
    )
    submission = jobs.submit_job(session, blobs, principal, request)
    # Render before committing: touching the rows afterwards would open a new transaction
    # (on SQLite a write lock) that the request would hold while it waits for the worker.
    view = job_view(submission.job)
    try:
        session.commit()  # the request boundary: durable (and published) before we answer or wait
    except IntegrityError:
        session.rollback()  # a concurrent request with the same Idempotency-Key won
        earlier = jobs.replay_idempotent(session, principal, request) if idempotency_key else None
        if earlier is None:
            raise
        view, submission = job_view(earlier), jobs.Submission(earlier, created=False)
        session.commit()
    return view, submission.created


async def _wait_for(db: Database, principal: Principal, job_id: uuid.UUID, seconds: float) -> JobView | None:
    deadline = time.monotonic() + seconds
    pause = 0.02
    while time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        job = await run_in_threadpool(_finished_job, db, principal, job_id)
        if job is not None:
            return job
        pause = min(pause * 1.5, 0.25)
    return None


def _finished_job(db: Database, principal: Principal, job_id: uuid.UUID) -> JobView | None:
    with db.session() as session:
        job = jobs.get_job(session, principal, job_id)
        return job_view(job) if job.status in FINISHED_STATUSES else None


@router.get("/jobs/{job_id}", response_model=JobView, summary="Get a job and its result", responses=problem_responses(404))
def get_job(job_id: JobId, principal: ApiKeyDep, session: SessionDep) -> JobView:
    return job_view(jobs.get_job(session, principal, job_id))


@router.get("/jobs", response_model=JobList, summary="List jobs, newest first")
def list_jobs(
    principal: ApiKeyDep,
    session: SessionDep,
    page: PageDep,
    plugin: Annotated[str | None, Query(max_length=100)] = None,
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
