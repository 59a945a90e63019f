"""The audit log as a tenant admin reads it: who created or revoked keys, registered and
activated models, deleted jobs, erased subjects, and when retention purged inputs.

Events never hold what was deleted: a deletion names its target by id (or, for a subject,
by digest) and counts what went."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from twinlens.contract.errors import InputError
from twinlens.db.models import AuditEvent
from twinlens.db.repositories import AuditRepository
from twinlens.services.keys import Principal
from twinlens.services.paging import PageRequest, next_cursor


class AuditEventView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    action: str = Field(description="What happened, e.g. key.create, job.delete, subject.erase, retention.purge")
    target: str = Field(description="What it happened to, as kind:id (job:..., key:..., subject:<digest>)")
    details: dict[str, Any] = Field(description="Counts and settings of the action; never deleted content")
    api_key_id: uuid.UUID | None = Field(description="The key that did it; null for the service itself (retention)")
    created_at: datetime


class AuditEventList(BaseModel):
    data: list[AuditEventView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end")


def list_events(
    session: Session,
    principal: Principal,
    page: PageRequest,
    *,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[AuditEvent], str | None]:
    """One page of the caller's tenant's events (tenant admins), newest first."""
    principal.require_admin()
    _check_window(since, until)
    result = AuditRepository(session).page(
        principal.tenant_id, limit=page.limit, action=action, since=since, until=until, after=page.after
    )
    return result.rows, next_cursor(result)


def _check_window(since: datetime | None, until: datetime | None) -> None:
    for name, moment in (("since", since), ("until", until)):
        if moment is None:
            continue
        if moment.tzinfo is None:
            raise InputError(name, "give a time zone, e.g. 2026-11-24T09:00:00Z")
        try:
            moment.astimezone(timezone.utc)  # what the query compares; 0001-01-01T00:00+01:00 has no UTC time
        except OverflowError:
            raise InputError(name, "out of range") from None
    if since is not None and until is not None and since >= until:
        raise InputError("until", "must be later than since")


def event_view(event: AuditEvent) -> AuditEventView:
    return AuditEventView.model_validate(event)
