"""Tables for explanations stored with job results (issue 13: heatmaps, word weights).

One row per explained job (what the explanation says, as JSON: per head the label it is
about, the heatmap's size and method, and per text field the words with their weights),
and one row per head that has an image heatmap (a small grayscale PNG at the encoder's
own resolution). Both are copies of the job's inputs (its words, where its image shows
evidence), so they go when the inputs go: retention, erasure and DELETE remove them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from twinlens.db.base import Base, UTCDateTime, utcnow


class JobExplanation(Base):
    __tablename__ = "job_explanations"
    __table_args__ = (Index("ix_job_explanations_tenant", "tenant_id"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(100))
    # Why it was computed: "needs_review", "requested" (explain=true) or "setting".
    reason: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Time the explanation took on the worker (its cost per job).
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExplanationHeatmap(Base):
    __tablename__ = "explanation_heatmaps"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job_explanations.job_id", ondelete="CASCADE"), primary_key=True)
    head: Mapped[str] = mapped_column(String(100), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)
