"""Tables for case embeddings and search indexes (issue 13: similar cases, search, alignment).

Vectors are stored as float32 bytes (little-endian) with their dimension, not JSON: a
4-byte value per dimension instead of ~10 characters, an exact round trip, and
`numpy.frombuffer` reads a tenant's rows for exact search without parsing text. The
same column type works on PostgreSQL (bytea) and SQLite (BLOB).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from twinlens.db.base import Base, UTCDateTime, new_id, utcnow

QUERY_STATUSES = ("queued", "succeeded", "failed")


class CaseEmbedding(Base):
    """One vector of one finished job: kind "fused" or a modality's name ("image", "text"...),
    from the model version that ran the job. The source of truth search indexes are built from."""

    __tablename__ = "case_embeddings"
    __table_args__ = (
        UniqueConstraint("job_id", "kind", name="uq_case_embeddings_job_kind"),
        Index("ix_case_embeddings_scope", "tenant_id", "model_version_id", "kind", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SearchIndex(Base):
    """An approximate index (a FAISS file a worker built) over one tenant's vectors of one
    model version and kind. Rows stored after `covers_through` are searched exactly."""

    __tablename__ = "search_indexes"
    __table_args__ = (UniqueConstraint("tenant_id", "model_version_id", "kind", name="uq_search_indexes_scope"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(16), default="faiss")
    path: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    covers_through: Mapped[datetime] = mapped_column(UTCDateTime)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SearchQuery(Base):
    """A text or image query waiting for a worker to embed it (the API waits for the
    vectors, then deletes the row: the query's inputs are never kept)."""

    __tablename__ = "search_queries"
    __table_args__ = (Index("ix_search_queries_created", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    text: Mapped[str | None] = mapped_column(Text)
    image: Mapped[bytes | None] = mapped_column(LargeBinary)
    media_type: Mapped[str | None] = mapped_column(String(100))
    # {kind: [floats]}: the query's embeddings (a handful of small vectors).
    vectors: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlignmentSpace(Base):
    """A shared image-text space for one model version, trained on one tenant's (photo,
    text) pairs: two linear maps (image vectors, text vectors -> the shared space), as
    float32 bytes in the order `layout` lists them with their shapes."""

    __tablename__ = "alignment_spaces"
    __table_args__ = (UniqueConstraint("tenant_id", "model_version_id", name="uq_alignment_spaces_scope"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    training_run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    text_kind: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    layout: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
