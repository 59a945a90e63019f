from __future__ import annotations

import uuid

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from twinlens.db.models import ModelVersion


class ModelRepository:
    def __init__(self, session: Session):
        self.session = session

    def get(self, model_id: uuid.UUID) -> ModelVersion | None:
        return self.session.get(ModelVersion, model_id)

    def visible_to(self, tenant_id: uuid.UUID, plugin: str | None = None) -> list[ModelVersion]:
        """The tenant's own models and the global ones, newest first."""
        query = select(ModelVersion).where(or_(ModelVersion.tenant_id == tenant_id, ModelVersion.tenant_id.is_(None)))
        if plugin:
            query = query.where(ModelVersion.plugin == plugin)
        return list(self.session.scalars(query.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())))

    def active(self, plugin: str, tenant_id: uuid.UUID | None) -> ModelVersion | None:
        """The model a new job uses: the tenant's own active one, else the global one (one
        query, every job pays it: the tenant's own sorts first, false before true)."""
        scope = ModelVersion.tenant_id.is_(None)
        if tenant_id is not None:
            scope = or_(ModelVersion.tenant_id == tenant_id, scope)
        query = (select(ModelVersion).where(ModelVersion.plugin == plugin, ModelVersion.is_active.is_(True), scope)
                 .order_by(ModelVersion.tenant_id.is_(None)).limit(1))
        return self.session.scalar(query)

    def active_in_scope(self, plugin: str, tenant_id: uuid.UUID | None) -> ModelVersion | None:
        """The active version of exactly this scope (no fallback to the global one)."""
        return self.session.scalar(self._scope(plugin, tenant_id).where(ModelVersion.is_active.is_(True)))

    def all_active(self) -> list[ModelVersion]:
        return list(self.session.scalars(select(ModelVersion).where(ModelVersion.is_active.is_(True))))

    def with_hash(self, plugin: str, tenant_id: uuid.UUID | None, content_hash: str) -> ModelVersion | None:
        return self.session.scalar(self._scope(plugin, tenant_id).where(ModelVersion.content_hash == content_hash))

    def with_bundle_path(self, bundle_path: str) -> list[ModelVersion]:
        return list(self.session.scalars(select(ModelVersion).where(ModelVersion.bundle_path == bundle_path)))

    def deactivate_scope(self, plugin: str, tenant_id: uuid.UUID | None) -> None:
        scope = ModelVersion.tenant_id.is_(None) if tenant_id is None else ModelVersion.tenant_id == tenant_id
        self.session.execute(
            update(ModelVersion).where(ModelVersion.plugin == plugin, scope).values(is_active=False)
        )

    def add(self, model: ModelVersion) -> ModelVersion:
        self.session.add(model)
        self.session.flush()
        return model

    @staticmethod
    def _scope(plugin: str, tenant_id: uuid.UUID | None):
        scope = ModelVersion.tenant_id.is_(None) if tenant_id is None else ModelVersion.tenant_id == tenant_id
        return select(ModelVersion).where(ModelVersion.plugin == plugin, scope)
