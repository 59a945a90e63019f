"""Queries behind erasure: what a subject's or a tenant's deletion takes with it, and the
deletion itself. Rows go by bulk DELETE; the foreign keys' ON DELETE CASCADE takes results,
feedback, webhook deliveries and their attempts, and case embeddings with the jobs (and everything with a tenant)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, Text, cast, delete, func, select
from sqlalchemy.orm import Session

from twinlens.db.batch_tables import Batch
from twinlens.db.embedding_tables import CaseEmbedding
from twinlens.db.models import ApiKey, Feedback, Job, ModelVersion, Result, Tenant, TrainingRun, WebhookDelivery


class ErasureRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- jobs of a tenant, or of one subject within a tenant --------------------------------
    def job_counts(self, tenant_id: uuid.UUID, subject_digest: str | None = None) -> dict[str, int]:
        """How many jobs, results, feedback rows and webhook deliveries the scope holds."""
        scope = _job_scope(tenant_id, subject_digest)
        counts = {"jobs": self._count(select(func.count()).select_from(Job).where(*scope))}
        for name, entity in (("results", Result), ("feedback", Feedback), ("webhook_deliveries", WebhookDelivery),
                             ("embeddings", CaseEmbedding)):
            query = select(func.count()).select_from(entity).join(Job, Job.id == entity.job_id).where(*scope)
            counts[name] = self._count(query)
        return counts

    def job_blobs(self, tenant_id: uuid.UUID, subject_digest: str | None = None) -> set[str]:
        query = select(Job.input_blob).where(*_job_scope(tenant_id, subject_digest), Job.input_blob.is_not(None)).distinct()
        return set(self.session.scalars(query))

    def metadata_containing(self, marker: str, tenant_id: uuid.UUID | None = None,
                            subject_digest: str | None = None) -> list[dict]:
        """The stored metadata of jobs (of the scope, or of every tenant) whose JSON holds
        `marker`: a job of several images lists its blobs there."""
        query = select(Job.meta).where(cast(Job.meta, Text).contains(marker))
        if tenant_id is not None:
            query = query.where(*_job_scope(tenant_id, subject_digest))
        return [meta for meta in self.session.scalars(query) if isinstance(meta, dict)]

    def delete_jobs(self, tenant_id: uuid.UUID, subject_digest: str | None = None) -> int:
        result = self.session.execute(
            delete(Job).where(*_job_scope(tenant_id, subject_digest)).execution_options(synchronize_session=False)
        )
        return result.rowcount

    def blobs_still_used(self, blobs: Iterable[str]) -> set[str]:
        """Of these blob keys, those another job still names (the store is content-addressed,
        so two jobs, even of two tenants, can share one image)."""
        keys = list(blobs)
        if not keys:
            return set()
        return set(self.session.scalars(select(Job.input_blob).where(Job.input_blob.in_(keys)).distinct()))

    # -- a whole tenant -----------------------------------------------------------------------
    def tenant_counts(self, tenant_id: uuid.UUID) -> dict[str, int]:
        """Rows of the tenant besides its jobs: keys, its own model versions, training runs."""
        return {
            name: self._count(select(func.count()).select_from(entity).where(entity.tenant_id == tenant_id))
            for name, entity in (("api_keys", ApiKey), ("model_versions", ModelVersion), ("training_runs", TrainingRun))
        }

    def delete_tenant(self, tenant_id: uuid.UUID) -> None:
        # Jobs and batches first: results and batches name the tenant's own model versions,
        # which go with the tenant.
        self.delete_jobs(tenant_id)
        self.session.execute(delete(Batch).where(Batch.tenant_id == tenant_id).execution_options(synchronize_session=False))
        self.session.execute(delete(Tenant).where(Tenant.id == tenant_id).execution_options(synchronize_session=False))

    def _count(self, query) -> int:
        return int(self.session.scalar(query) or 0)


def _job_scope(tenant_id: uuid.UUID, subject_digest: str | None) -> list[ColumnElement[bool]]:
    scope = [Job.tenant_id == tenant_id]
    if subject_digest is not None:
        scope.append(Job.subject_digest == subject_digest)
    return scope
