"""Queries behind similar-case search: case embeddings, search index records, pending
search queries and alignment spaces. Every read names its tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from twinlens.db.embedding_tables import AlignmentSpace, CaseEmbedding, SearchIndex, SearchQuery
from twinlens.db.models import Feedback, Job, Result


@dataclass(frozen=True)
class VectorScope:
    """One tenant's vectors of one model version and kind."""

    tenant_id: uuid.UUID
    model_version_id: uuid.UUID
    kind: str


@dataclass(frozen=True)
class CaseFilters:
    """What a search may be narrowed to (None: no narrowing); `label` is matched in Python."""

    plugin: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    corrected_only: bool = False
    exclude_job: uuid.UUID | None = None

    @property
    def any(self) -> bool:
        return bool(self.plugin or self.created_from or self.created_to or self.corrected_only)


@dataclass(frozen=True)
class VectorRow:
    job_id: uuid.UUID
    created_at: datetime
    dim: int
    vector: bytes


class EmbeddingRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- case embeddings ------------------------------------------------------------------
    def add_many(self, rows: Sequence[CaseEmbedding]) -> None:
        self.session.add_all(rows)

    def for_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, CaseEmbedding]:
        query = select(CaseEmbedding).where(CaseEmbedding.tenant_id == tenant_id, CaseEmbedding.job_id == job_id)
        return {row.kind: row for row in self.session.scalars(query)}

    def delete_for_job(self, job_id: uuid.UUID) -> int:
        result = self.session.execute(delete(CaseEmbedding).where(CaseEmbedding.job_id == job_id)
                                      .execution_options(synchronize_session=False))
        return result.rowcount

    def count_for_jobs(self, tenant_id: uuid.UUID, subject_digest: str | None = None) -> int:
        query = select(func.count()).select_from(CaseEmbedding).join(Job, Job.id == CaseEmbedding.job_id).where(Job.tenant_id == tenant_id)
        if subject_digest is not None:
            query = query.where(Job.subject_digest == subject_digest)
        return int(self.session.scalar(query) or 0)

    def vectors(self, scope: VectorScope, filters: CaseFilters | None = None, *, after: datetime | None = None,
                through: datetime | None = None) -> list[VectorRow]:
        """The scope's vectors, oldest first; `after`/`through` bound their storing time."""
        query = (select(CaseEmbedding.job_id, CaseEmbedding.created_at, CaseEmbedding.dim, CaseEmbedding.vector)
                 .where(CaseEmbedding.tenant_id == scope.tenant_id, CaseEmbedding.model_version_id == scope.model_version_id,
                        CaseEmbedding.kind == scope.kind))
        if after is not None:
            query = query.where(CaseEmbedding.created_at > after)
        if through is not None:
            query = query.where(CaseEmbedding.created_at <= through)
        query = _filtered(query, filters or CaseFilters())
        rows = self.session.execute(query.order_by(CaseEmbedding.created_at, CaseEmbedding.id))
        return [VectorRow(row.job_id, row.created_at, row.dim, row.vector) for row in rows]

    def count(self, scope: VectorScope) -> tuple[int, datetime | None]:
        """How many vectors the scope has, and when the newest was stored."""
        query = (select(func.count(), func.max(CaseEmbedding.created_at))
                 .where(CaseEmbedding.tenant_id == scope.tenant_id, CaseEmbedding.model_version_id == scope.model_version_id,
                        CaseEmbedding.kind == scope.kind))
        count, newest = self.session.execute(query).one()
        return int(count or 0), newest

    def scopes_with_at_least(self, rows: int) -> list[VectorScope]:
        query = (select(CaseEmbedding.tenant_id, CaseEmbedding.model_version_id, CaseEmbedding.kind)
                 .group_by(CaseEmbedding.tenant_id, CaseEmbedding.model_version_id, CaseEmbedding.kind)
                 .having(func.count() >= rows))
        return [VectorScope(*row) for row in self.session.execute(query)]

    def existing_jobs(self, scope: VectorScope, job_ids: Sequence[uuid.UUID], filters: CaseFilters | None = None) -> set[uuid.UUID]:
        """Of these jobs, those that still have a vector in the scope (and pass the filters)."""
        if not job_ids:
            return set()
        query = select(CaseEmbedding.job_id).where(
            CaseEmbedding.tenant_id == scope.tenant_id, CaseEmbedding.model_version_id == scope.model_version_id,
            CaseEmbedding.kind == scope.kind, CaseEmbedding.job_id.in_(list(job_ids)))
        return set(self.session.scalars(_filtered(query, filters or CaseFilters())))

    # -- what a neighbour shows -----------------------------------------------------------
    def cases(self, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[Job, Result | None, Feedback | None]]:
        """Each job with its result and latest correction, within the tenant."""
        if not job_ids:
            return {}
        jobs = self.session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.id.in_(list(job_ids))))
        latest: dict[uuid.UUID, Feedback] = {}
        feedback = self.session.scalars(select(Feedback).where(Feedback.tenant_id == tenant_id, Feedback.job_id.in_(list(job_ids)))
                                        .order_by(Feedback.created_at))
        for row in feedback:
            latest[row.job_id] = row
        return {job.id: (job, job.result, latest.get(job.id)) for job in jobs}

    # -- search indexes -----------------------------------------------------------------------
    def index(self, scope: VectorScope) -> SearchIndex | None:
        return self.session.scalar(select(SearchIndex).where(
            SearchIndex.tenant_id == scope.tenant_id, SearchIndex.model_version_id == scope.model_version_id,
            SearchIndex.kind == scope.kind))

    def indexes_of(self, tenant_id: uuid.UUID | None = None, model_version_id: uuid.UUID | None = None) -> list[SearchIndex]:
        query = select(SearchIndex)
        if tenant_id is not None:
            query = query.where(SearchIndex.tenant_id == tenant_id)
        if model_version_id is not None:
            query = query.where(SearchIndex.model_version_id == model_version_id)
        return list(self.session.scalars(query))

    def delete_index(self, index: SearchIndex) -> None:
        self.session.delete(index)

    # -- pending queries ------------------------------------------------------------------------
    def add_query(self, query: SearchQuery) -> SearchQuery:
        self.session.add(query)
        self.session.flush()
        return query

    def query(self, query_id: uuid.UUID) -> SearchQuery | None:
        return self.session.get(SearchQuery, query_id, populate_existing=True)

    def delete_query(self, query_id: uuid.UUID) -> None:
        self.session.execute(delete(SearchQuery).where(SearchQuery.id == query_id).execution_options(synchronize_session=False))

    def delete_queries_before(self, cutoff: datetime) -> int:
        result = self.session.execute(delete(SearchQuery).where(SearchQuery.created_at < cutoff)
                                      .execution_options(synchronize_session=False))
        return result.rowcount

    # -- alignment spaces -----------------------------------------------------------------------
    def alignment(self, tenant_id: uuid.UUID, model_version_id: uuid.UUID) -> AlignmentSpace | None:
        return self.session.scalar(select(AlignmentSpace).where(
            AlignmentSpace.tenant_id == tenant_id, AlignmentSpace.model_version_id == model_version_id))

    def put_alignment(self, space: AlignmentSpace) -> AlignmentSpace:
        """One space per tenant and model version: a new one replaces the old."""
        old = self.alignment(space.tenant_id, space.model_version_id)
        if old is not None:
            self.session.delete(old)
            self.session.flush()
        self.session.add(space)
        self.session.flush()
        return space


def _filtered(query: Any, filters: CaseFilters) -> Any:
    if filters.exclude_job is not None:
        query = query.where(CaseEmbedding.job_id != filters.exclude_job)
    if filters.plugin:
        query = query.where(CaseEmbedding.plugin == filters.plugin)
    if filters.created_from or filters.created_to:
        query = query.join(Job, Job.id == CaseEmbedding.job_id)
        if filters.created_from:
            query = query.where(Job.created_at >= filters.created_from)
        if filters.created_to:
            query = query.where(Job.created_at <= filters.created_to)
    if filters.corrected_only:
        query = query.where(exists().where(Feedback.job_id == CaseEmbedding.job_id))
    return query
