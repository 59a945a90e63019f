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
    since: str | None = None,
    until: str | None = None,
) -> tuple[list[AuditEvent], str | None]:
    """One page of the caller's tenant's events (tenant admins), newest first; `since` and
    `until` are ISO 8601 times with a time zone (InputError naming the one that is not)."""
    principal.require_admin()
    since, until = _window(since, until)
    result = AuditRepository(session).page(
        principal.tenant_id, limit=page.limit, action=action, since=since, until=until, after=page.after
    )
    return result.rows, next_cursor(result)


def _window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = _moment("since", since), _moment("until", until)
    if start is not None and end is not None and start >= end:
        raise InputError("until", "must be later than since")
    return start, end


def _moment(name: str, value: str | None) -> datetime | None:
    """Parsed here, not by FastAPI: pydantic would also take a number as a Unix time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(name, "not an ISO 8601 time, e.g. 2026-11-24T09:00:00Z") from None
    if moment.tzinfo is None:
        raise InputError(name, "give a time zone, e.g. 2026-11-24T09:00:00Z")
    try:
        return moment.astimezone(timezone.utc)  # what the query compares; 0001-01-01T00:00+01:00 has no UTC time
    except OverflowError:
        raise InputError(name, "out of range") from None


def event_view(event: AuditEvent) -> AuditEventView:
    return AuditEventView.model_validate(event)
