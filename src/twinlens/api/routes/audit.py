"""The tenant's audit log (tenant admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from twinlens.api.deps import PRINTABLE_PATTERN, AdminKeyDep, PageDep, SessionDep
from twinlens.api.problems import problem_responses
from twinlens.services import audit
from twinlens.services.audit import AuditEventList

router = APIRouter(prefix="/v1", tags=["audit"], responses=problem_responses(400, 401, 403, 422))


@router.get("/audit-events", response_model=AuditEventList, summary="The tenant's audit events, newest first (admin)")
def list_audit_events(
    principal: AdminKeyDep,
    session: SessionDep,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE_PATTERN, description="Only this action, e.g. job.delete")] = None,
    since: Annotated[str | None, Query(max_length=64, description="From this time on (inclusive): ISO 8601 with a time zone",
                                       json_schema_extra={"format": "date-time"})] = None,
    until: Annotated[str | None, Query(max_length=64, description="Before this time (exclusive): ISO 8601 with a time zone",
                                       json_schema_extra={"format": "date-time"})] = None,
) -> AuditEventList:
    events, next_cursor = audit.list_events(session, principal, page, action=action, since=since, until=until)
    return AuditEventList(data=[audit.event_view(event) for event in events], next_cursor=next_cursor)
