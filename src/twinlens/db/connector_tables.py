"""Tables for helpdesk connectors (issue 17: Zendesk, Freshdesk).

- `connectors`: one helpdesk per row, configured by a tenant admin; its credentials (API
  token, webhook secret) only as one Fernet token (services/connectors.py seals them).
- `connector_tickets`: one row per (connector, ticket, triggering comment/update): the
  dedupe key, so a webhook delivered twice never makes a second job or note, and the state
  of that ticket's trip (received -> fetching -> submitted -> writing -> written).
- `connector_events`: every call made for a ticket (and each intake), like webhook
  delivery attempts: `GET /v1/connectors/{id}/events`.
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

CONNECTOR_TICKET_STATUSES = ("received", "fetching", "submitted", "writing", "written", "duplicate", "failed", "skipped")


class Connector(Base):
    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_connectors_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    base_url: Mapped[str] = mapped_column(Text)
    plugin: Mapped[str] = mapped_column(String(100))
    # JSON of every credential, sealed with the service's secrets key; never returned.
    credentials_sealed: Mapped[str] = mapped_column(Text)
    # Field/tag mapping, review tag and group, extra attachment hosts.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    write_back: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConnectorTicket(Base):
    __tablename__ = "connector_tickets"
    __table_args__ = (
        UniqueConstraint("connector_id", "ticket_id", "trigger_id", name="uq_connector_tickets_trigger"),
        Index("ix_connector_tickets_status_updated", "status", "updated_at"),
        CheckConstraint("status IN (" + ", ".join(repr(s) for s in CONNECTOR_TICKET_STATUSES) + ")", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    connector_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[str] = mapped_column(String(100))
    # The comment/update that fired the webhook; `?<digest of the body>` until the worker
    # reads the ticket's latest public comment, when the webhook did not name it.
    trigger_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="received")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConnectorEvent(Base):
    __tablename__ = "connector_events"
    __table_args__ = (Index("ix_connector_events_page", "connector_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    connector_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_row_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("connector_tickets.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[str | None] = mapped_column(String(100))
    # intake, duplicate, ignored, call (an HTTP call to the helpdesk), attachment, job, write_back
    kind: Mapped[str] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(10))
    url: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
