from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from twinlens.db.models import FINISHED_STATUSES, Feedback, Job, Result
from twinlens.db.repositories.tenant_owned import TenantOwnedRepository


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

    def finished_with_inputs_before(self, cutoff: datetime, limit: int = 500) -> list[Job]:
        query = select(Job).where(
            Job.status.in_(FINISHED_STATUSES),
            Job.finished_at < cutoff,
            Job.inputs_purged_at.is_(None),
        )
        return list(self.session.scalars(query.limit(limit)))

    def blob_referenced_elsewhere(self, blob: str, job_id: uuid.UUID) -> bool:
        query = select(Job.id).where(Job.input_blob == blob, Job.id != job_id).limit(1)
        return self.session.scalar(query) is not None

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

    def claim(self, job_ids: Sequence[uuid.UUID], now: datetime) -> list[uuid.UUID]:
        """queued -> running for those still queued; a conditional UPDATE, so two workers
        given the same id never both get it."""
        result = self.session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == "queued")
            .values(status="running", attempts=Job.attempts + 1, started_at=now)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return [row[0] for row in result]

    def finish(self, job_id: uuid.UUID, status: str, now: datetime, error: dict[str, Any] | None = None) -> bool:
        """running -> succeeded/failed; False when the job is no longer running (deleted,
        canceled or already finished by another worker)."""
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(status=status, finished_at=now, error=error)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def requeue(self, job_id: uuid.UUID) -> bool:
        result = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(status="queued", started_at=None)
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
