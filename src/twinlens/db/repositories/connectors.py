"""Queries of the connector tables: connectors, their tickets (the dedupe rows) and events."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.connector_tables import Connector, ConnectorEvent, ConnectorTicket
from twinlens.db.repositories.pagination import (
    Key,
    KeysetPage,
    filter_given,
    keyset_page,
)


def _host_only(url: str | None) -> str | None:
    if not url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/" if rest else None


class ConnectorRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- connectors -------------------------------------------------------------------------
    def add(self, connector: Connector) -> Connector:
        self.session.add(connector)
        self.session.flush()
        return connector

    def get(self, connector_id: uuid.UUID) -> Connector | None:
        return self.session.get(Connector, connector_id)

    def get_for_tenant(self, connector_id: uuid.UUID, tenant_id: uuid.UUID) -> Connector | None:
        """None for another tenant's connector as for a missing one."""
        return self.session.scalar(select(Connector).where(Connector.id == connector_id, Connector.tenant_id == tenant_id))

    def by_name(self, tenant_id: uuid.UUID, name: str) -> Connector | None:
        return self.session.scalar(select(Connector).where(Connector.tenant_id == tenant_id, Connector.name == name))

    def for_tenant(self, tenant_id: uuid.UUID) -> list[Connector]:
        return list(self.session.scalars(select(Connector).where(Connector.tenant_id == tenant_id).order_by(Connector.name)))

    def delete(self, connector: Connector) -> None:
        self.session.delete(connector)
        self.session.flush()

    # -- tickets ----------------------------------------------------------------------------
    def add_ticket_once(self, row: ConnectorTicket) -> tuple[ConnectorTicket, bool]:
        """Insert the (connector, ticket, trigger) row, or find the one already there: the
        unique key settles two deliveries of one event arriving at once."""
        existing = self.ticket_by_trigger(row.connector_id, row.ticket_id, row.trigger_id)
        if existing is not None:
            return existing, False
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            found = self.ticket_by_trigger(row.connector_id, row.ticket_id, row.trigger_id)
            if found is None:
                raise
            return found, False
        return row, True

    def ticket_by_trigger(self, connector_id: uuid.UUID, ticket_id: str, trigger_id: str) -> ConnectorTicket | None:
        return self.session.scalar(select(ConnectorTicket).where(
            ConnectorTicket.connector_id == connector_id, ConnectorTicket.ticket_id == ticket_id,
            ConnectorTicket.trigger_id == trigger_id))

    def ticket(self, row_id: uuid.UUID) -> ConnectorTicket | None:
        return self.session.get(ConnectorTicket, row_id, populate_existing=True)

    def move(self, row_id: uuid.UUID, from_statuses: tuple[str, ...], to_status: str, **values) -> bool:
        """from -> to, only while the row is in one of `from_statuses`: of two workers given the
        same row, one moves it."""
        result = self.session.execute(
            update(ConnectorTicket)
            .where(ConnectorTicket.id == row_id, ConnectorTicket.status.in_(from_statuses))
            .values(status=to_status, updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def resolve_trigger(self, row_id: uuid.UUID, trigger_id: str) -> bool:
        """Name the row's trigger (read from the ticket); False when another row of the same
        ticket already has it: this webhook repeats one already handled."""
        try:
            with self.session.begin_nested():
                self.session.execute(update(ConnectorTicket).where(ConnectorTicket.id == row_id)
                                     .values(trigger_id=trigger_id, updated_at=utcnow())
                                     .execution_options(synchronize_session=False))
        except IntegrityError:
            return False
        return True

    def stuck(self, statuses: tuple[str, ...], updated_before: datetime, limit: int = 200) -> list[ConnectorTicket]:
        query = select(ConnectorTicket).where(ConnectorTicket.status.in_(statuses), ConnectorTicket.updated_at < updated_before)
        return list(self.session.scalars(query.order_by(ConnectorTicket.updated_at).limit(limit)))

    def ticket_for_job(self, job_id: uuid.UUID) -> ConnectorTicket | None:
        return self.session.scalar(select(ConnectorTicket).where(ConnectorTicket.job_id == job_id))

    def forget_job_copies(self, job_id: uuid.UUID, reason: str) -> int:
        """A job's inputs are forgotten: so are the helpdesk URLs (they name the attachment
        files) and the errors its ticket's events logged; the rest of the log (kinds,
        methods, statuses, times) stays. How many events were scrubbed."""
        rows = select(ConnectorTicket.id).where(ConnectorTicket.job_id == job_id)
        events = list(self.session.scalars(select(ConnectorEvent).where(ConnectorEvent.ticket_row_id.in_(rows))))
        for event in events:
            event.url = _host_only(event.url)
            event.error = reason if event.error else None
        self.session.flush()
        return len(events)

    # -- events -----------------------------------------------------------------------------
    def add_event(self, event: ConnectorEvent) -> ConnectorEvent:
        self.session.add(event)
        self.session.flush()
        return event

    def events_page(
        self, connector_id: uuid.UUID, *, ticket_id: str | None, kind: str | None, after: Key | None, limit: int,
    ) -> KeysetPage[ConnectorEvent]:
        """The connector's events newest first (one ticket's, given `ticket_id`)."""
        query = filter_given(select(ConnectorEvent).where(ConnectorEvent.connector_id == connector_id),
                             (ConnectorEvent.ticket_id, ticket_id), (ConnectorEvent.kind, kind))
        return keyset_page(self.session, query, (ConnectorEvent.created_at, ConnectorEvent.id), after, limit)
