from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinlens.db.models import AuditEvent
from twinlens.db.repositories.pagination import Key, KeysetPage, filter_given, keyset_page


class AuditRepository:
    def __init__(self, session: Session):
        self.session = session

    def record(
        self,
        action: str,
        *,
        tenant_id: uuid.UUID | None,
        api_key_id: uuid.UUID | None = None,
        target: str = "",
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        event = AuditEvent(
            action=action, tenant_id=tenant_id, api_key_id=api_key_id, target=target, details=details or {}
        )
        self.session.add(event)
        return event

    def for_target(self, target: str) -> list[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.target == target).order_by(AuditEvent.created_at)
        return list(self.session.scalars(query))

    def page(
        self,
        tenant_id: uuid.UUID,
        *,
        limit: int,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: Key | None = None,
    ) -> KeysetPage[AuditEvent]:
        """One tenant's events newest first, keyset-paginated on (created_at, id); `since`
        is inclusive and `until` exclusive, so consecutive windows never share an event."""
        query = filter_given(select(AuditEvent).where(AuditEvent.tenant_id == tenant_id), (AuditEvent.action, action))
        if since is not None:
            query = query.where(AuditEvent.created_at >= since)
        if until is not None:
            query = query.where(AuditEvent.created_at < until)
        return keyset_page(self.session, query, (AuditEvent.created_at, AuditEvent.id), after, limit)
