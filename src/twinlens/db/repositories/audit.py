from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinlens.db.models import AuditEvent


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
