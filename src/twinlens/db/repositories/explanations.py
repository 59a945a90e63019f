"""Queries of stored explanations (db/explanation_tables.py), always within one tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from twinlens.db.explanation_tables import ExplanationHeatmap, JobExplanation


class ExplanationRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(self, explanation: JobExplanation, heatmaps: dict[str, bytes]) -> None:
        self.session.add(explanation)
        self.session.flush()  # the heatmaps' foreign key names this row
        self.session.add_all(ExplanationHeatmap(job_id=explanation.job_id, head=head, png=png) for head, png in heatmaps.items())
        self.session.flush()

    def for_tenant(self, job_id: uuid.UUID, tenant_id: uuid.UUID) -> JobExplanation | None:
        """None for another tenant's job as for one without an explanation."""
        return self.session.scalar(select(JobExplanation).where(JobExplanation.job_id == job_id, JobExplanation.tenant_id == tenant_id))

    def heatmap(self, job_id: uuid.UUID, head: str) -> bytes | None:
        return self.session.scalar(select(ExplanationHeatmap.png).where(ExplanationHeatmap.job_id == job_id, ExplanationHeatmap.head == head))

    def delete_for_job(self, job_id: uuid.UUID) -> int:
        """Forget a job's explanation; its heatmaps go with it (ON DELETE CASCADE)."""
        result = self.session.execute(delete(JobExplanation).where(JobExplanation.job_id == job_id).execution_options(synchronize_session=False))
        return result.rowcount
