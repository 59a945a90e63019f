"""Job state changes made by workers: claim, complete, fail, recover, purge."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.db.base import utcnow
from twinlens.db.models import Job, Result
from twinlens.db.repositories import JobRepository
from twinlens.db.session import after_commit
from twinlens.services.webhooks import enqueue_job_event


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job, detached from the session."""

    id: uuid.UUID
    plugin: str
    model_version_id: uuid.UUID
    model_version: str
    bundle_path: str
    input_blob: str | None
    media_type: str | None
    texts: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    attempts: int = 1


@dataclass(frozen=True)
class JobOutcome:
    heads: dict[str, Any]
    decision: dict[str, Any]
    explanation: dict[str, Any]


def claim_jobs(session: Session, job_ids: Sequence[uuid.UUID], max_attempts: int) -> list[ClaimedJob]:
    """queued -> running (attempts + 1) for the ids still queued. A job that has already
    used up its attempts (it kept killing workers) fails instead of looping."""
    repo = JobRepository(session)
    now = utcnow()
    exhausted = {"field": None, "reason": f"gave up after {max_attempts} attempts (the worker kept stopping)"}
    repo.fail_exhausted(job_ids, max_attempts, exhausted, now)
    claimed = repo.claim(job_ids, now)
    return [_snapshot(job) for job in repo.many(claimed)] if claimed else []


def claim_more(session: Session, model_version_id: uuid.UUID, limit: int) -> list[ClaimedJob]:
    """Claim up to `limit` more queued first-attempt jobs of one model version (to fill a
    batch). Racing workers are settled by the conditional UPDATE in `claim`."""
    repo = JobRepository(session)
    candidates = repo.queued_for_model(model_version_id, limit)
    claimed = repo.claim(candidates, utcnow()) if candidates else []
    return [_snapshot(job) for job in repo.many(claimed)] if claimed else []


def _snapshot(job: Job) -> ClaimedJob:
    return ClaimedJob(
        id=job.id,
        plugin=job.plugin,
        model_version_id=job.model_version_id,
        model_version=job.model_version.version,
        bundle_path=job.model_version.bundle_path,
        input_blob=job.input_blob,
        media_type=job.input_media_type,
        texts=dict(job.texts or {}),
        metadata=dict(job.meta or {}),
        created_at=job.created_at,
        attempts=job.attempts,
    )


def complete_job(session: Session, claimed: ClaimedJob, outcome: JobOutcome) -> bool:
    """Write the result; False (and nothing written) if the job is no longer running."""
    repo = JobRepository(session)
    if not repo.finish(claimed.id, "succeeded", utcnow()):
        return False
    repo.add_result(
        Result(
            job_id=claimed.id,
            model_version_id=claimed.model_version_id,
            model_version=claimed.model_version,
            heads=outcome.heads,
            decision=outcome.decision,
            explanation=outcome.explanation,
        )
    )
    _announce(session, claimed.id)
    return True


def fail_job(session: Session, job_id: uuid.UUID, reason: str, field_name: str | None = None) -> bool:
    if not JobRepository(session).finish(job_id, "failed", utcnow(), {"field": field_name, "reason": reason}):
        return False
    _announce(session, job_id)
    return True


def _announce(session: Session, job_id: uuid.UUID) -> None:
    job = session.get(Job, job_id, populate_existing=True)
    if job is not None:
        enqueue_job_event(session, job)


def requeue_stale_jobs(session: Session, stale_after: float, publish) -> int:
    """Jobs `running` for too long lost their worker: queue them again (claim_jobs fails
    them once their attempts are used up)."""
    repo = JobRepository(session)
    count = 0
    for job in repo.running_since_before(utcnow() - timedelta(seconds=stale_after)):
        if repo.requeue(job.id):
            count += 1
            after_commit(session, lambda job_id=job.id, plugin=job.plugin: publish(job_id, plugin))
    return count


def queued_jobs(session: Session, older_than: float = 0.0) -> list[tuple[uuid.UUID, str]]:
    return JobRepository(session).ids_with_status("queued", created_before=utcnow() - timedelta(seconds=older_than))


def purge_job_inputs(session: Session, blobs: BlobStore, job: Job, now: datetime) -> None:
    blob = job.input_blob
    if blob is not None and not JobRepository(session).blob_referenced_elsewhere(blob, job.id):
        after_commit(session, lambda: blobs.delete(blob))
    job.input_blob = None
    job.texts = None
    job.inputs_purged_at = now


def purge_expired_inputs(session: Session, blobs: BlobStore, retention_days: float | None) -> int:
    """Retention: drop inputs of jobs finished more than `retention_days` ago."""
    if retention_days is None:
        return 0
    now = utcnow()
    jobs = JobRepository(session).finished_with_inputs_before(now - timedelta(days=retention_days))
    for job in jobs:
        purge_job_inputs(session, blobs, job, now)
    return len(jobs)
