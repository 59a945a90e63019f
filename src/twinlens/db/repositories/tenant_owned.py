"""Reads shared by the tables whose rows belong to one tenant and carry a plugin and a
status (jobs, training runs): fetch one within its tenant, list a tenant's rows."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinlens.db.repositories.pagination import Key, KeysetPage, filter_given, keyset_page

Entity = TypeVar("Entity")


class TenantOwnedRepository(Generic[Entity]):
    entity: ClassVar[Any]  # the mapped class; it has id, tenant_id, plugin, status and created_at

    def __init__(self, session: Session):
        self.session = session

    def get(self, row_id: uuid.UUID) -> Entity | None:
        return self.session.get(self.entity, row_id)

    def get_for_tenant(self, row_id: uuid.UUID, tenant_id: uuid.UUID) -> Entity | None:
        """None for another tenant's row as for a missing one: callers cannot tell them apart."""
        entity = self.entity
        return self.session.scalar(select(entity).where(entity.id == row_id, entity.tenant_id == tenant_id))

    def page(
        self,
        tenant_id: uuid.UUID,
        *,
        limit: int,
        plugin: str | None = None,
        status: str | None = None,
        after: Key | None = None,
    ) -> KeysetPage[Entity]:
        """The tenant's rows newest first, keyset-paginated on (created_at, id): the id
        breaks ties between rows created in the same microsecond."""
        entity = self.entity
        query = select(entity).where(entity.tenant_id == tenant_id)
        query = filter_given(query, (entity.plugin, plugin), (entity.status, status))
        return keyset_page(self.session, query, (entity.created_at, entity.id), after, limit)
