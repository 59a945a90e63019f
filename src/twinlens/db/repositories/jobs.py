from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, func, or_, select, update

from twinlens.db.models import FINISHED_STATUSES, Feedback, Job, Result
from twinlens.db.repositories.tenant_owned import TenantOwnedRepository


@dataclass(frozen=True)
class RunningClaim:
    job_id: uuid.UUID
    plugin: str
    worker: str
    attempt: int


class JobRepository(TenantOwnedRepository[Job]):
    entity = Job

    # -- reads --------------------------------------------------------------------------
    def many(self, job_ids: Sequence[uuid.UUID]) -> list[Job]:
        return list(self.session.scalars(select(Job).where(Job.id.in_(job_ids))))

    def by_idempotency_key(self, tenant_id: uuid.UUID, key: str) -> Job | None:
        return self.session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))

    def count_by_status(self) -> dict[str, int]:
        rows = self.session.execute(select(Job.status, func.count()).group_by(Job.status))
        return {status: count for status, count in rows}

    def ids_with_status(self, status: str, *, created_before: datetime, limit: int = 500) -> list[tuple[uuid.UUID, str]]:
        query = select(Job.id, Job.plugin).where(Job.status == status, Job.created_at < created_before)
        return [(row.id, row.plugin) for row in self.session.execute(query.order_by(Job.created_at).limit(limit))]

    def running_since_before(self, started_before: datetime, limit: int = 500) -> list[Job]:
        query = select(Job).where(Job.status == "running", Job.started_at < started_before).limit(limit)
        return list(self.session.scalars(query))

    def running_claims(self, started_before: datetime, limit: int = 2000) -> list[RunningClaim]:
        """Running jobs claimed before `started_before` by a named worker, with its name."""
        query = (
            select(Job.id, Job.plugin, Job.claimed_by, Job.attempts)
            .where(Job.status == "running", Job.claimed_by.is_not(None), Job.started_at < started_before)
            .order_by(Job.started_at)
            .limit(limit)
        )
        return [RunningClaim(row.id, row.plugin, row.claimed_by, row.attempts) for row in self.session.execute(query)]

    def queued_page(self, created_before: datetime, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[tuple[uuid.UUID, str, datetime]]:
        """Queued jobs created before `created_before`, oldest first, after the (created_at, id)
        key of the previous page: the outbox walks every queued job, not just the oldest."""
        query = select(Job.id, Job.plugin, Job.created_at).where(Job.status == "queued", Job.created_at < created_before)
        if after is not None:
            query = query.where(or_(Job.created_at > after[0], and_(Job.created_at == after[0], Job.id > after[1])))
        rows = self.session.execute(query.order_by(Job.created_at, Job.id).limit(limit))
        return [(row.id, row.plugin, row.created_at) for row in rows]

    def finished_with_inputs_before(self, cutoff: datetime, limit: int = 500) -> list[Job]:
        query = select(Job).where(
            Job.status.in_(FINISHED_STATUSES),
            Job.finished_at < cutoff,
            Job.inputs_purged_at.is_(None),
        )
        return list(self.session.scalars(query.limit(limit)))

    def blob_referenced_elsewhere(self, blob: str, job_id: uuid.UUID) -> bool:
        """Whether another job names this blob: as its image column or in the list of a
        job of several images (kept in its metadata JSON; services/job_images.py)."""
        query = select(Job.id).where(Job.input_blob == blob, Job.id != job_id).limit(1)
        if self.session.scalar(query) is not None:
            return True
        listed = select(Job.id).where(cast(Job.meta, Text).contains(blob), Job.id != job_id).limit(1)
        return self.session.scalar(listed) is not None

    # -- writes -------------------------------------------------------------------------
    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def delete(self, job: Job) -> None:
        self.session.delete(job)
        self.session.flush()

    def fail_exhausted(self, job_ids: Sequence[uuid.UUID], max_attempts: int, error: dict[str, Any], now: datetime) -> None:
        self.session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == "queued", Job.attempts >= max_attempts)
            .values(status="failed", error=error, finished_at=now)
            .execution_options(synchronize_session=False)
        )

    def queued_for_model(self, model_version_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
        """Oldest queued first-attempt jobs of one model version: candidates to join a batch.
        Jobs on a retry are left out: one that may have killed a worker runs alone."""
        return list(self.session.scalars(
            select(Job.id)
            .where(Job.status == "queued", Job.model_version_id == model_version_id, Job.attempts == 0)
            .order_by(Job.created_at)
            .limit(limit)
        ))

    def claim(self, job_ids: Sequence[uuid.UUID], now: datetime, worker: str | None = None) -> list[uuid.UUID]:
        """queued -> running for those still queued, recorded against `worker`; a conditional
        UPDATE, so two workers given the same id never both get it. The attempt number it
        sets is the claim's fencing token (see `finish`)."""
        result = self.session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == "queued")
            .values(status="running", attempts=Job.attempts + 1, started_at=now, claimed_by=worker)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return [row[0] for row in result]

    def finish(
        self, job_id: uuid.UUID, status: str, now: datetime, error: dict[str, Any] | None = None, attempt: int | None = None,
    ) -> bool:
        """running -> succeeded/failed; False when the job is no longer running (deleted,
        canceled or already finished by another worker) or, given the claim's `attempt`, no
        longer that claim's: a worker presumed dead whose job was re-queued and claimed again
        cannot write over the new claim."""
        conditions = [Job.id == job_id, Job.status == "running"]
        if attempt is not None:
            conditions.append(Job.attempts == attempt)
        result = self.session.execute(
            update(Job)
            .where(*conditions)
            .values(status=status, finished_at=now, error=error)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def requeue(self, job_id: uuid.UUID, attempt: int | None = None) -> bool:
        """running -> queued; given `attempt`, only if it is still that claim (a sweep that
        judged an old claim must not undo a newer one)."""
        conditions = [Job.id == job_id, Job.status == "running"]
        if attempt is not None:
            conditions.append(Job.attempts == attempt)
        result = self.session.execute(
            update(Job)
            .where(*conditions)
            .values(status="queued", started_at=None, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def cancel(self, job_id: uuid.UUID, now: datetime) -> bool:
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(status="canceled", finished_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def add_result(self, result: Result) -> Result:
        self.session.add(result)
        self.session.flush()
        return result

    def add_feedback(self, feedback: Feedback) -> Feedback:
        self.session.add(feedback)
        self.session.flush()
        return feedback

    def feedback_for(self, job_id: uuid.UUID) -> list[Feedback]:
        query = select(Feedback).where(Feedback.job_id == job_id).order_by(Feedback.created_at)
        return list(self.session.scalars(query))
