"""Submitting a job: the use case behind `POST /v1/plugins/{name}/jobs`.

From parsed inputs to a durable, published job: fetch a URL image, validate the inputs,
refuse a webhook URL that may not be called, scrub what the plugin says must never be
stored, fingerprint the request for its Idempotency-Key, store the job, commit, and
(when asked) wait for the result.

Unlike the other services this one commits the session it is given: the request's
answer (and any wait) must come after the job is durable and its id published, and a
commit that loses an Idempotency-Key race is answered with the winner's job.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.contract.plugin import Plugin
from twinlens.db.models import FINISHED_STATUSES
from twinlens.db.session import Database
from twinlens.services import erasure, jobs
from twinlens.services.fetch import fetch_image
from twinlens.services.inputs import SubmittedInputs, check_image_count, request_fingerprint, validate_inputs
from twinlens.services.keys import Principal
from twinlens.services.netguard import check_url
from twinlens.services.views import JobView, job_view
from twinlens.settings import Settings

FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class JobSubmission:
    """A job request as the API parsed it, nothing about its contents checked yet."""

    plugin: Plugin
    inputs: SubmittedInputs
    idempotency_key: str | None = None
    explain: bool = False  # explain the result even when it needs no review


@dataclass(frozen=True)
class SubmittedJob:
    job: JobView
    created: bool  # False: an earlier job answered this Idempotency-Key


async def submit_job_request(
    session: Session, db: Database, blobs: BlobStore, settings: Settings, principal: Principal,
    submission: JobSubmission, *, wait_seconds: float = 0.0,
) -> SubmittedJob:
    """Accept the job and, given `wait_seconds`, wait (up to the server's cap) for it to finish.
    The job comes back as it last stood: finished, or still queued or running."""
    submitted = await anyio.to_thread.run_sync(accept_job, session, blobs, settings, principal, submission)
    if not wait_seconds or submitted.job.status in FINISHED_STATUSES:
        return submitted
    finished = await wait_until_finished(db, principal, submitted.job.id, min(wait_seconds, settings.max_wait_seconds))
    return SubmittedJob(finished or submitted.job, submitted.created)


def accept_job(
    session: Session, blobs: BlobStore, settings: Settings, principal: Principal, submission: JobSubmission,
) -> SubmittedJob:
    """Blocking (network, image decoding, the database): run it in a worker thread."""
    plugin, inputs = submission.plugin, submission.inputs
    check_image_count(plugin, inputs)  # before fetching any URL
    if inputs.image_url is not None:
        _fetch_url_image(inputs, settings)
    for image in inputs.more_images:
        if image.url is not None:
            fetched = _fetch(image.url, settings)
            image.data, image.media_type = fetched.data, fetched.media_type
    raw = validate_inputs(plugin, inputs, settings)
    # From the metadata as sent: sanitize may scrub the reference the caller will erase by.
    subject_digest = erasure.subject_digest_of(principal.tenant_id, raw.metadata)
    if inputs.webhook_url:
        check_url(inputs.webhook_url, field="webhook_url", allow_private=settings.allow_private_webhooks)
    request = jobs.JobRequest(
        plugin=plugin.name,
        raw=plugin.sanitize(raw),  # what must never be stored is removed before storing
        webhook_url=inputs.webhook_url,
        idempotency_key=submission.idempotency_key,
        fingerprint=request_fingerprint(plugin.name, raw, inputs.webhook_url, submission.explain),
        subject_digest=subject_digest,
        explain=submission.explain,
        zero_shot=settings.zero_shot,
    )
    try:
        # A concurrent request with the same Idempotency-Key can win at the insert's flush
        # or at the commit, so both sit inside the try.
        submitted = jobs.submit_job(session, blobs, principal, request)
        # Render before committing: touching the rows afterwards would open a new transaction
        # (on SQLite a write lock) that the request would hold while it waits for the worker.
        view = job_view(submitted.job)
        session.commit()  # the request boundary: durable (and published) before we answer or wait
    except IntegrityError:
        session.rollback()
        winner = _idempotency_race_winner(session, principal, request)
        if winner is None:
            raise
        return SubmittedJob(winner, created=False)
    return SubmittedJob(view, submitted.created)


def _fetch_url_image(inputs: SubmittedInputs, settings: Settings) -> None:
    fetched = _fetch(inputs.image_url, settings)
    inputs.image_bytes = fetched.data
    inputs.image_media_type = fetched.media_type


def _fetch(url: str, settings: Settings):
    return fetch_image(
        url,
        max_bytes=settings.max_upload_bytes,
        timeout=settings.url_fetch_timeout,
        max_redirects=settings.url_fetch_max_redirects,
        allow_private=settings.allow_private_urls,
    )


def _idempotency_race_winner(session: Session, principal: Principal, request: jobs.JobRequest) -> JobView | None:
    """The job of a concurrent request with the same Idempotency-Key that committed first;
    None when the request had no key (the conflict is then not one we can answer for)."""
    earlier = jobs.replay_idempotent(session, principal, request) if request.idempotency_key else None
    if earlier is None:
        return None
    view = job_view(earlier)
    session.commit()
    return view


async def wait_until_finished(db: Database, principal: Principal, job_id: uuid.UUID, seconds: float) -> JobView | None:
    """Poll, backing off, until the job finishes; None when `seconds` pass first. Each
    look is its own short session, so no transaction stays open while waiting."""
    deadline = time.monotonic() + seconds
    pause = FIRST_POLL_SECONDS
    while time.monotonic() < deadline:
        await anyio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        job = await anyio.to_thread.run_sync(finished_job, db, principal, job_id)
        if job is not None:
            return job
        pause = min(pause * 1.5, MAX_POLL_SECONDS)
    return None


def finished_job(db: Database, principal: Principal, job_id: uuid.UUID) -> JobView | None:
    with db.session() as session:
        job = jobs.get_job(session, principal, job_id)
        return job_view(job) if job.status in FINISHED_STATUSES else None
