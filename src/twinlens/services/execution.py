"""Job state changes made by workers: claim, complete, fail, recover, purge.

Every claim records the worker process that made it and bumps the job's attempt number;
that number fences the claim: a result is written only by the claim that is current, so a
worker presumed dead (its heartbeat lapsed, its job re-queued and claimed again) whose
result arrives late writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.db.base import utcnow
from twinlens.db.models import Job, Result
from twinlens.db.repositories import JobRepository
from twinlens.db.session import after_commit
from twinlens.services import erasure
from twinlens.services.job_images import StoredImage, caller_metadata, stored_images
from twinlens.services.webhooks import enqueue_job_event
from twinlens.services import connectors_intake


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
    explain: bool = False  # the request asked for an explanation
    # Every image in order (a job of several images); () for jobs of one or none, which
    # `input_blob`/`media_type` describe.
    images: tuple[StoredImage, ...] = ()

    def stored_images(self) -> list[StoredImage]:
        return list(self.images) or stored_images(self.input_blob, self.media_type, None)


@dataclass(frozen=True)
class JobOutcome:
    heads: dict[str, Any]
    decision: dict[str, Any]
    explanation: dict[str, Any]


def claim_jobs(
    session: Session, job_ids: Sequence[uuid.UUID], max_attempts: int, worker: str | None = None,
) -> list[ClaimedJob]:
    """queued -> running (attempts + 1) for the ids still queued, held by `worker`. A job
    that has already used up its attempts (it kept killing workers) fails instead of looping."""
    repo = JobRepository(session)
    now = utcnow()
    exhausted = {"field": None, "reason": f"gave up after {max_attempts} attempts (the worker kept stopping)"}
    repo.fail_exhausted(job_ids, max_attempts, exhausted, now)
    claimed = repo.claim(job_ids, now, worker)
    return [_snapshot(job) for job in repo.many(claimed)] if claimed else []


def claim_more(session: Session, model_version_id: uuid.UUID, limit: int, worker: str | None = None) -> list[ClaimedJob]:
    """Claim up to `limit` more queued first-attempt jobs of one model version (to fill a
    batch). Racing workers are settled by the conditional UPDATE in `claim`."""
    repo = JobRepository(session)
    candidates = repo.queued_for_model(model_version_id, limit)
    claimed = repo.claim(candidates, utcnow(), worker) if candidates else []
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
        metadata=caller_metadata(job.meta),
        images=tuple(stored_images(job.input_blob, job.input_media_type, job.meta)),
        created_at=job.created_at,
        attempts=job.attempts,
        explain=bool(job.explain),
    )


def complete_job(session: Session, claimed: ClaimedJob, outcome: JobOutcome) -> bool:
    """Write the result; False (and nothing written) if the job is no longer running under
    this claim."""
    repo = JobRepository(session)
    if not repo.finish(claimed.id, "succeeded", utcnow(), attempt=claimed.attempts):
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


def fail_job(
    session: Session, job_id: uuid.UUID, reason: str, field_name: str | None = None, attempt: int | None = None,
) -> bool:
    """Record the failure; given the claim's `attempt`, only while that claim is current."""
    error = {"field": field_name, "reason": reason}
    if not JobRepository(session).finish(job_id, "failed", utcnow(), error, attempt=attempt):
        return False
    _announce(session, job_id)
    return True


def _announce(session: Session, job_id: uuid.UUID) -> None:
    job = session.get(Job, job_id, populate_existing=True)
    if job is not None:
        enqueue_job_event(session, job)
        connectors_intake.on_job_finished(session, job)  # a helpdesk ticket's job: its write-back


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


# What the heartbeats say, per worker asked about: the ids of the jobs it holds, for each
# one that is alive (a worker missing from the answer is dead). None: no judgement now.
LivingWorkers = Callable[[Collection[str]], Mapping[str, Collection[str]] | None]


def requeue_jobs_of_lost_workers(session: Session, living: LivingWorkers, grace_seconds: float, publish) -> int:
    """Queue again each running job that no living worker holds: its worker's heartbeat
    lapsed (SIGKILL, out of memory, a lost machine), or the worker let go of it when its
    task failed (the database went away mid-batch). Claims younger than `grace_seconds`
    are left alone: the claimant's next beat may not have named them yet."""
    repo = JobRepository(session)
    claims = repo.running_claims(utcnow() - timedelta(seconds=grace_seconds))
    if not claims:
        return 0
    held = living({claim.worker for claim in claims})
    if held is None:
        return 0
    count = 0
    for claim in claims:
        if str(claim.job_id) in held.get(claim.worker, ()):
            continue
        if repo.requeue(claim.job_id, claim.attempt):
            count += 1
            after_commit(session, lambda job_id=claim.job_id, plugin=claim.plugin: publish(job_id, plugin))
    return count


OUTBOX_PAGE = 500
OUTBOX_MAX_PER_SWEEP = 20_000


def publish_unpublished(
    session: Session, published_among: Callable[[list[str]], set[str]], publish, *, grace_seconds: float,
) -> int:
    """The outbox: publish every queued job whose publish the broker does not remember
    (committed while Redis was down, or the publisher died after its commit). Jobs newer
    than `grace_seconds` are skipped: their submitter is publishing them right now."""
    repo = JobRepository(session)
    created_before = utcnow() - timedelta(seconds=grace_seconds)
    after, seen, published = None, 0, 0
    while seen < OUTBOX_MAX_PER_SWEEP:
        page = repo.queued_page(created_before, after, OUTBOX_PAGE)
        if not page:
            break
        known = published_among([str(job_id) for job_id, _, _ in page])
        for job_id, plugin, _ in page:
            if str(job_id) not in known:
                publish(job_id, plugin)
                published += 1
        last_id, _, last_created = page[-1]
        after, seen = (last_created, last_id), seen + len(page)
    return published


def queued_jobs(session: Session, older_than: float = 0.0) -> list[tuple[uuid.UUID, str]]:
    return JobRepository(session).ids_with_status("queued", created_before=utcnow() - timedelta(seconds=older_than))


def purge_job_inputs(session: Session, blobs: BlobStore, job: Job, now: datetime) -> None:
    """Forget the job's inputs and every copy of them (services/erasure.py)."""
    erasure.forget_job_inputs(session, blobs, job, now)


def purge_expired_inputs(session: Session, blobs: BlobStore, retention_days: float | None) -> int:
    """Retention: forget the inputs of jobs finished more than `retention_days` ago, and
    audit it (per tenant, how many)."""
    if retention_days is None:
        return 0
    now = utcnow()
    jobs = JobRepository(session).finished_with_inputs_before(now - timedelta(days=retention_days))
    for job in jobs:
        purge_job_inputs(session, blobs, job, now)
    erasure.audit_purges(session, jobs, retention_days)
    return len(jobs)
