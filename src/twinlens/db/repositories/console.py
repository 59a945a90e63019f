"""Queries of the web console: its sessions and login links, the review queue's candidates,
per-state counts, and the reviewers' actions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from twinlens.db.console_tables import (
    ConsoleLoginLink,
    ConsoleReviewAction,
    ConsoleSession,
)
from twinlens.db.models import ApiKey, Feedback, Job, Result


@dataclass(frozen=True)
class QueueFilter:
    """What the review queue's SQL can narrow by (head and label are read from the JSON
    in Python, the same on PostgreSQL and SQLite)."""

    plugin: str | None = None
    model_version_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None


class ConsoleRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- sessions and login links ---------------------------------------------------------
    def add(self, row: ConsoleSession | ConsoleLoginLink | ConsoleReviewAction) -> None:
        self.session.add(row)
        self.session.flush()

    def session_by_hash(self, token_hash: str) -> ConsoleSession | None:
        return self.session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == token_hash))

    def link_by_hash(self, token_hash: str) -> ConsoleLoginLink | None:
        return self.session.scalar(select(ConsoleLoginLink).where(ConsoleLoginLink.token_hash == token_hash))

    def key(self, key_id: uuid.UUID) -> ApiKey | None:
        return self.session.get(ApiKey, key_id)

    # -- the review queue -----------------------------------------------------------------
    def review_candidates(self, tenant_id: uuid.UUID, where: QueueFilter, *, limit: int) -> list[Job]:
        """The tenant's finished jobs whose decision asks for review and that nobody has
        corrected yet, newest first, at most `limit` of them."""
        query = (
            select(Job)
            .join(Result, Result.job_id == Job.id)
            .where(
                Job.tenant_id == tenant_id,
                Job.status == "succeeded",
                Result.decision["needs_review"].as_boolean().is_(True),
                ~exists().where(Feedback.job_id == Job.id),
            )
        )
        if where.plugin:
            query = query.where(Job.plugin == where.plugin)
        if where.model_version_id:
            query = query.where(Result.model_version_id == where.model_version_id)
        if where.created_from:
            query = query.where(Job.created_at >= where.created_from)
        if where.created_before:
            query = query.where(Job.created_at < where.created_before)
        return list(self.session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))

    def status_counts(self, tenant_id: uuid.UUID) -> dict[str, int]:
        rows = self.session.execute(select(Job.status, func.count()).where(Job.tenant_id == tenant_id).group_by(Job.status))
        return {status: count for status, count in rows}

    def review_counts(self, tenant_id: uuid.UUID) -> tuple[int, int]:
        """(awaiting review, reviewed): finished jobs asking for review without and with a correction."""
        corrected = exists().where(Feedback.job_id == Job.id)
        base = (
            select(func.count())
            .select_from(Job)
            .join(Result, Result.job_id == Job.id)
            .where(Job.tenant_id == tenant_id, Job.status == "succeeded", Result.decision["needs_review"].as_boolean().is_(True))
        )
        return self.session.scalar(base.where(~corrected)) or 0, self.session.scalar(base.where(corrected)) or 0

    def model_versions_of_jobs(self, tenant_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
        """The model versions the tenant's results name (for the queue's filter)."""
        query = (
            select(Result.model_version_id, Result.model_version)
            .join(Job, Job.id == Result.job_id)
            .where(Job.tenant_id == tenant_id)
            .distinct()
        )
        return sorted(((row[0], row[1]) for row in self.session.execute(query)), key=lambda row: row[1])

    # -- reviewers' actions ---------------------------------------------------------------
    def skipped_in(self, session_id: uuid.UUID) -> set[uuid.UUID]:
        query = select(ConsoleReviewAction.job_id).where(
            ConsoleReviewAction.session_id == session_id, ConsoleReviewAction.action == "skip",
            ConsoleReviewAction.undone_at.is_(None),
        )
        return set(self.session.scalars(query))

    def last_action(self, session_id: uuid.UUID) -> ConsoleReviewAction | None:
        query = (
            select(ConsoleReviewAction)
            .where(ConsoleReviewAction.session_id == session_id, ConsoleReviewAction.undone_at.is_(None))
            .order_by(ConsoleReviewAction.created_at.desc(), ConsoleReviewAction.id.desc())
            .limit(1)
        )
        return self.session.scalar(query)

    def recent_actions(self, session_id: uuid.UUID, limit: int) -> list[ConsoleReviewAction]:
        query = (
            select(ConsoleReviewAction)
            .where(ConsoleReviewAction.session_id == session_id)
            .order_by(ConsoleReviewAction.created_at.desc(), ConsoleReviewAction.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def actions_for_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> list[ConsoleReviewAction]:
        query = (
            select(ConsoleReviewAction)
            .where(ConsoleReviewAction.tenant_id == tenant_id, ConsoleReviewAction.job_id == job_id)
            .order_by(ConsoleReviewAction.created_at)
        )
        return list(self.session.scalars(query))

    def jobs_by_id(self, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Job]:
        if not job_ids:
            return {}
        query = select(Job).where(Job.tenant_id == tenant_id, Job.id.in_(list(job_ids)))
        return {job.id: job for job in self.session.scalars(query)}

    def delete_feedback(self, feedback_id: uuid.UUID) -> None:
        feedback = self.session.get(Feedback, feedback_id)
        if feedback is not None:
            self.session.delete(feedback)
            self.session.flush()
