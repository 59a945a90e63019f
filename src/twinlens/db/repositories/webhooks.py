from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from twinlens.db.models import WebhookAttempt, WebhookDelivery
from twinlens.db.repositories.pagination import Key, KeysetPage, filter_given, keyset_page


class WebhookRepository:
    def __init__(self, session: Session):
        self.session = session

    def get(self, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        return self.session.get(WebhookDelivery, delivery_id)

    def get_for_tenant(self, delivery_id: uuid.UUID, tenant_id: uuid.UUID) -> WebhookDelivery | None:
        query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id)
        return self.session.scalar(query)

    def page_for_tenant(
        self, tenant_id: uuid.UUID, *, status: str | None, after: Key | None, limit: int,
    ) -> KeysetPage[WebhookDelivery]:
        """The tenant's deliveries newest first, keyset-paginated on (created_at, id)."""
        query = filter_given(select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id), (WebhookDelivery.status, status))
        return keyset_page(self.session, query, (WebhookDelivery.created_at, WebhookDelivery.id), after, limit)

    def reopen_failed(self, delivery_id: uuid.UUID, now: datetime) -> bool:
        """failed -> pending, due now, with a new retry schedule from its current attempt
        count; False when it is not failed (a second redelivery racing this one)."""
        result = self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "failed")
            .values(status="pending", next_attempt_at=now, locked_until=None, attempts_at_redelivery=WebhookDelivery.attempts)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def for_job(self, job_id: uuid.UUID) -> list[WebhookDelivery]:
        query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        return list(self.session.scalars(query.order_by(WebhookDelivery.created_at)))

    def add(self, delivery: WebhookDelivery) -> WebhookDelivery:
        self.session.add(delivery)
        self.session.flush()
        return delivery

    def lease(self, delivery_id: uuid.UUID, now: datetime, until: datetime) -> bool:
        """Take a due, pending, unleased delivery; False if it is not ours to send now."""
        result = self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            )
            .values(locked_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def due(self, now: datetime, limit: int = 500) -> list[uuid.UUID]:
        query = select(WebhookDelivery.id).where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
        )
        return list(self.session.scalars(query.order_by(WebhookDelivery.next_attempt_at).limit(limit)))

    def add_attempt(self, attempt: WebhookAttempt) -> WebhookAttempt:
        self.session.add(attempt)
        return attempt
