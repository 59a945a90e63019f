"""Tables for the learning loop (issue 14: holdouts, gate reports, shadow outputs, activation history, drift).

Models are scoped like model versions: `tenant_id` None is the global scope. Rows that
copy a job (a holdout's members, shadow outputs) reference the job with ON DELETE
CASCADE, so erasing the job takes them along; retention scrubs what shadow outputs
quote of the inputs (services/erasure.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from twinlens.db.base import Base, UTCDateTime, new_id, utcnow

HOLDOUT_KINDS = ("registered", "corrections")
ALIASES = ("champion", "challenger")
ACTIVATION_ACTIONS = ("activate", "promote", "rollback")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Holdout(Base):
    """One frozen version of a tenant's held-out set for a plugin. A new version is a new
    row; the newest one judges candidates. `registered`: a labelled data set the tenant
    gave (a path inside the data roots). `corrections`: corrected jobs reserved from
    training (its members in holdout_jobs)."""

    __tablename__ = "holdouts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "plugin", "version", name="uq_holdouts_tenant_plugin_version"),
        CheckConstraint(_one_of("kind", HOLDOUT_KINDS), name="kind"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data_path: Mapped[str | None] = mapped_column(Text)
    # Its size when frozen (rows of the data set, or reserved corrected jobs).
    size: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HoldoutJob(Base):
    """A corrected job frozen into a `corrections` holdout (never trained on)."""

    __tablename__ = "holdout_jobs"

    holdout_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("holdouts.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True, index=True)


class ModelEvaluation(Base):
    """A model version's figures on one holdout version, measured by a worker: what the
    gate compares (primary metric, per-class recall, ECE, latency)."""

    __tablename__ = "model_evaluations"
    __table_args__ = (UniqueConstraint("model_version_id", "holdout_id", name="uq_model_evaluations_model_holdout"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    holdout_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("holdouts.id", ondelete="CASCADE"), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GateReport(Base):
    """One run of the evaluation gate: every check with its numbers, and the verdict."""

    __tablename__ = "gate_reports"
    __table_args__ = (Index("ix_gate_reports_candidate", "candidate_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(100))
    candidate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    champion_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    holdout_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("holdouts.id", ondelete="SET NULL"))
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    passed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelAlias(Base):
    """champion / challenger of a scope (a tenant, or `global`) and plugin. The champion
    follows the active model; the challenger runs in shadow on `shadow_share` of the
    scope's live jobs."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        UniqueConstraint("scope", "plugin", "alias", name="uq_model_aliases_scope_plugin_alias"),
        CheckConstraint(_one_of("alias", ALIASES), name="alias"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The tenant's id as text, or "global": one unique key on every backend (NULLs differ).
    scope: Mapped[str] = mapped_column(String(40))
    plugin: Mapped[str] = mapped_column(String(100))
    alias: Mapped[str] = mapped_column(String(16))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    shadow_share: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelActivation(Base):
    """The activation history of a scope and plugin: every change of champion."""

    __tablename__ = "model_activations"
    __table_args__ = (
        Index("ix_model_activations_scope", "scope", "plugin", "created_at"),
        CheckConstraint(_one_of("action", ACTIVATION_ACTIONS), name="action"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    previous_model_version_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    gate_report_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("gate_reports.id", ondelete="SET NULL"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShadowResult(Base):
    """A challenger's output on a live job: kept apart from `results`, never in a job's
    answer or webhook."""

    __tablename__ = "shadow_results"
    __table_args__ = (Index("ix_shadow_results_model", "model_version_id", "created_at"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    model_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    champion_version_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    heads: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Per task: did its top label (labels, value) equal the champion's.
    agreement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
