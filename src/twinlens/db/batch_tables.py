"""Tables for bulk scoring batches (issue 15: POST /v1/plugins/{name}/batches).

A batch is one uploaded JSONL/CSV file: its rows are parsed and checked at upload, kept
one per `batch_rows` line (inputs until scored or purged, then the row's answer), and
scored by workers in micro-batches. The uploaded file itself is not kept: its rows are
all of it that is stored, so purging them forgets the upload.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from twinlens.db.base import Base, UTCDateTime, new_id, utcnow

BATCH_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
FINISHED_BATCH_STATUSES = ("succeeded", "failed", "canceled")
BATCH_ROW_STATUSES = ("queued", "succeeded", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_tenant_page", "tenant_id", "created_at", "id"),
        Index("ix_batches_status_heartbeat", "status", "heartbeat_at"),
        CheckConstraint(_one_of("status", BATCH_STATUSES), name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    plugin: Mapped[str] = mapped_column(String(100))
    # Chosen at upload, so every row of the file is scored by the same version.
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    filename: Mapped[str] = mapped_column(String(255), default="")
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    # Why the batch as a whole stopped (its model could not be loaded), not a row's error.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped by the worker at every micro-batch it writes: a running batch whose heartbeat
    # is older than job_stale_after_seconds lost its worker and is queued again.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    # Retention or erasure removed the rows (inputs and answers); the counts stay.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    model_version = relationship("ModelVersion", lazy="joined")


class BatchRow(Base):
    __tablename__ = "batch_rows"
    __table_args__ = (
        Index("ix_batch_rows_batch_status_line", "batch_id", "status", "line"),
        Index("ix_batch_rows_subject", "subject_digest"),
        CheckConstraint(_one_of("status", BATCH_ROW_STATUSES), name="status"),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based line of the uploaded file
    row_ref: Mapped[str | None] = mapped_column(Text)  # the row's own `id` column, echoed in the results
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # {"texts": ..., "metadata": ..., "image": {"url": ...} | {"path": ...} | null}, sanitized
    # by the plugin; cleared once the row is scored.
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The row's answer: model_version, prediction (every head's probabilities) and decision.
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"field", "reason"}
    # services/erasure.subject_digest of the row's metadata.subject_ref, if it named one.
    subject_digest: Mapped[str | None] = mapped_column(String(64))
