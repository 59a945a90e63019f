"""Queries of the learning loop: corrections with their jobs, holdouts, evaluations, gate
reports, aliases, the activation history, shadow outputs and the drift figures."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from twinlens.db.base import utcnow
from twinlens.db.learning_tables import (
    GateReport,
    Holdout,
    HoldoutJob,
    ModelActivation,
    ModelAlias,
    ModelEvaluation,
    ShadowResult,
)
from twinlens.db.models import Feedback, Job, Result


def scope_key(tenant_id: uuid.UUID | None) -> str:
    """The alias/history key of a model scope: a tenant's id, or `global`."""
    return "global" if tenant_id is None else str(tenant_id)


class LearningRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- corrections --------------------------------------------------------------------
    def corrected_jobs(self, tenant_id: uuid.UUID, plugin: str, since: datetime | None = None,
                       until: datetime | None = None) -> list[tuple[Job, list[Feedback]]]:
        """The tenant's jobs of `plugin` with feedback given in [since, until), oldest
        correction first, each with all its feedback rows (oldest first)."""
        query = (select(Feedback.job_id, func.min(Feedback.created_at).label("first"))
                 .join(Job, Job.id == Feedback.job_id)
                 .where(Feedback.tenant_id == tenant_id, Job.tenant_id == tenant_id, Job.plugin == plugin))
        if since is not None:
            query = query.where(Feedback.created_at >= since)
        if until is not None:
            query = query.where(Feedback.created_at < until)
        ids = [row.job_id for row in self.session.execute(query.group_by(Feedback.job_id).order_by("first"))]
        if not ids:
            return []
        jobs = {job.id: job for job in self.session.scalars(
            select(Job).where(Job.id.in_(ids)).options(selectinload(Job.result)))}
        feedback: dict[uuid.UUID, list[Feedback]] = {job_id: [] for job_id in ids}
        for row in self.session.scalars(select(Feedback).where(Feedback.job_id.in_(ids)).order_by(Feedback.created_at)):
            feedback[row.job_id].append(row)
        return [(jobs[job_id], feedback[job_id]) for job_id in ids if job_id in jobs]

    def corrected_job_ids(self, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not job_ids:
            return set()
        return set(self.session.scalars(select(Feedback.job_id).where(Feedback.job_id.in_(list(job_ids))).distinct()))

    # -- holdouts -----------------------------------------------------------------------
    def latest_holdout(self, tenant_id: uuid.UUID, plugin: str) -> Holdout | None:
        return self.session.scalar(select(Holdout).where(Holdout.tenant_id == tenant_id, Holdout.plugin == plugin)
                                   .order_by(Holdout.version.desc()).limit(1))

    def holdouts(self, tenant_id: uuid.UUID, plugin: str | None = None) -> list[Holdout]:
        query = select(Holdout).where(Holdout.tenant_id == tenant_id)
        if plugin:
            query = query.where(Holdout.plugin == plugin)
        return list(self.session.scalars(query.order_by(Holdout.plugin, Holdout.version.desc())))

    def holdout(self, holdout_id: uuid.UUID) -> Holdout | None:
        return self.session.get(Holdout, holdout_id)

    def add_holdout(self, holdout: Holdout, job_ids: Iterable[uuid.UUID] = ()) -> Holdout:
        holdout.version = (self.session.scalar(select(func.max(Holdout.version)).where(
            Holdout.tenant_id == holdout.tenant_id, Holdout.plugin == holdout.plugin)) or 0) + 1
        self.session.add(holdout)
        self.session.flush()
        self.session.add_all([HoldoutJob(holdout_id=holdout.id, job_id=job_id) for job_id in job_ids])
        self.session.flush()
        return holdout

    def holdout_job_ids(self, holdout_id: uuid.UUID) -> list[uuid.UUID]:
        return list(self.session.scalars(select(HoldoutJob.job_id).where(HoldoutJob.holdout_id == holdout_id)
                                         .order_by(HoldoutJob.job_id)))

    def held_out_job_ids(self, tenant_id: uuid.UUID, plugin: str) -> set[uuid.UUID]:
        """Every job any holdout version of the tenant and plugin froze."""
        query = (select(HoldoutJob.job_id).join(Holdout, Holdout.id == HoldoutJob.holdout_id)
                 .where(Holdout.tenant_id == tenant_id, Holdout.plugin == plugin))
        return set(self.session.scalars(query))

    def jobs(self, job_ids: Sequence[uuid.UUID]) -> list[Job]:
        if not job_ids:
            return []
        return list(self.session.scalars(select(Job).where(Job.id.in_(list(job_ids))).order_by(Job.id)))

    # -- evaluations --------------------------------------------------------------------
    def evaluation(self, model_id: uuid.UUID, holdout_id: uuid.UUID) -> ModelEvaluation | None:
        return self.session.scalar(select(ModelEvaluation).where(
            ModelEvaluation.model_version_id == model_id, ModelEvaluation.holdout_id == holdout_id))

    def evaluations_of(self, model_id: uuid.UUID) -> list[ModelEvaluation]:
        return list(self.session.scalars(select(ModelEvaluation).where(ModelEvaluation.model_version_id == model_id)
                                         .order_by(ModelEvaluation.created_at.desc())))

    def save_evaluation(self, model_id: uuid.UUID, holdout_id: uuid.UUID, metrics: dict[str, Any]) -> ModelEvaluation:
        """One evaluation per model and holdout version: a new measurement replaces it."""
        existing = self.evaluation(model_id, holdout_id)
        if existing is not None:
            existing.metrics, existing.created_at = metrics, utcnow()
            self.session.flush()
            return existing
        evaluation = ModelEvaluation(model_version_id=model_id, holdout_id=holdout_id, metrics=metrics)
        self.session.add(evaluation)
        self.session.flush()
        return evaluation

    # -- gate reports -------------------------------------------------------------------
    def add_report(self, report: GateReport) -> GateReport:
        self.session.add(report)
        self.session.flush()
        return report

    def report(self, report_id: uuid.UUID) -> GateReport | None:
        return self.session.get(GateReport, report_id)

    def reports_for(self, candidate_id: uuid.UUID) -> list[GateReport]:
        return list(self.session.scalars(select(GateReport).where(GateReport.candidate_id == candidate_id)
                                         .order_by(GateReport.created_at.desc())))

    # -- aliases ------------------------------------------------------------------------
    def alias(self, scope: str, plugin: str, alias: str) -> ModelAlias | None:
        return self.session.scalar(select(ModelAlias).where(
            ModelAlias.scope == scope, ModelAlias.plugin == plugin, ModelAlias.alias == alias))

    def aliases_of(self, model_id: uuid.UUID) -> list[ModelAlias]:
        return list(self.session.scalars(select(ModelAlias).where(ModelAlias.model_version_id == model_id)))

    def set_alias(self, scope: str, plugin: str, alias: str, model_id: uuid.UUID, share: float = 0.0) -> ModelAlias:
        row = self.alias(scope, plugin, alias)
        if row is None:
            row = ModelAlias(scope=scope, plugin=plugin, alias=alias, model_version_id=model_id)
            self.session.add(row)
        row.model_version_id, row.shadow_share, row.updated_at = model_id, share, utcnow()
        self.session.flush()
        return row

    def clear_alias(self, scope: str, plugin: str, alias: str) -> bool:
        result = self.session.execute(delete(ModelAlias).where(
            ModelAlias.scope == scope, ModelAlias.plugin == plugin, ModelAlias.alias == alias))
        return result.rowcount > 0

    def challengers(self, scopes: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ModelAlias]:
        wanted = set(scopes)
        if not wanted:
            return {}
        query = select(ModelAlias).where(ModelAlias.alias == "challenger",
                                         ModelAlias.scope.in_({scope for scope, _ in wanted}))
        return {(row.scope, row.plugin): row for row in self.session.scalars(query) if (row.scope, row.plugin) in wanted}

    # -- activation history -------------------------------------------------------------
    def add_activation(self, activation: ModelActivation) -> ModelActivation:
        self.session.add(activation)
        self.session.flush()
        return activation

    def history(self, scope: str, plugin: str, limit: int = 200) -> list[ModelActivation]:
        query = (select(ModelActivation).where(ModelActivation.scope == scope, ModelActivation.plugin == plugin)
                 .order_by(ModelActivation.created_at.desc(), ModelActivation.id.desc()).limit(limit))
        return list(self.session.scalars(query))

    def last_activation_of(self, model_id: uuid.UUID) -> ModelActivation | None:
        """The latest step that made this model the champion."""
        return self.session.scalar(select(ModelActivation).where(ModelActivation.model_version_id == model_id)
                                   .order_by(ModelActivation.created_at.desc(), ModelActivation.id.desc()).limit(1))

    # -- shadow outputs -----------------------------------------------------------------
    def jobs_with_tenant(self, job_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, uuid.UUID, str, uuid.UUID]]:
        """(job id, tenant id, plugin, model version id) of these jobs."""
        if not job_ids:
            return []
        query = select(Job.id, Job.tenant_id, Job.plugin, Job.model_version_id).where(Job.id.in_(list(job_ids)))
        return [tuple(row) for row in self.session.execute(query)]

    def results(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Result]:
        if not job_ids:
            return {}
        return {row.job_id: row for row in self.session.scalars(select(Result).where(Result.job_id.in_(list(job_ids))))}

    def add_shadow(self, row: ShadowResult) -> bool:
        """False when this job already has this model's shadow output (a redelivery)."""
        if self.session.get(ShadowResult, (row.job_id, row.model_version_id)) is not None:
            return False
        self.session.add(row)
        self.session.flush()
        return True

    def shadow_results(self, model_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> list[ShadowResult]:
        query = select(ShadowResult).where(ShadowResult.model_version_id == model_id)
        if tenant_id is not None:
            query = query.join(Job, Job.id == ShadowResult.job_id).where(Job.tenant_id == tenant_id)
        return list(self.session.scalars(query.order_by(ShadowResult.created_at)))

    def shadow_results_of_job(self, job_id: uuid.UUID) -> list[ShadowResult]:
        return list(self.session.scalars(select(ShadowResult).where(ShadowResult.job_id == job_id)))

    def latest_feedback(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Feedback]:
        if not job_ids:
            return {}
        rows = self.session.scalars(select(Feedback).where(Feedback.job_id.in_(list(job_ids))).order_by(Feedback.created_at))
        return {row.job_id: row for row in rows}  # the newest wins

    # -- drift --------------------------------------------------------------------------
    def results_since(self, model_id: uuid.UUID, since: datetime, tenant_id: uuid.UUID | None = None
                      ) -> list[tuple[uuid.UUID, datetime, dict[str, Any], dict[str, Any]]]:
        """(job id, result time, heads, decision) of the version's results since `since`."""
        query = select(Result.job_id, Result.created_at, Result.heads, Result.decision).where(
            Result.model_version_id == model_id, Result.created_at >= since)
        if tenant_id is not None:
            query = query.join(Job, Job.id == Result.job_id).where(Job.tenant_id == tenant_id)
        return [tuple(row) for row in self.session.execute(query.order_by(Result.created_at))]
