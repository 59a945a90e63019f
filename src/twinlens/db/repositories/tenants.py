from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinlens.db.models import ApiKey, Tenant


class TenantRepository:
    def __init__(self, session: Session):
        self.session = session

    def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return self.session.get(Tenant, tenant_id)

    def by_name(self, name: str) -> Tenant | None:
        return self.session.scalar(select(Tenant).where(Tenant.name == name))

    def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        self.session.flush()
        return tenant

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))

    def key(self, key_id: uuid.UUID) -> ApiKey | None:
        return self.session.get(ApiKey, key_id)

    def keys_of(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
        return list(self.session.scalars(query))

    def all_keys(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    def add_key(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key
