"""Tenants, API keys and who a request is."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.models import ApiKey, Tenant
from twinlens.db.repositories import AuditRepository, TenantRepository
from twinlens.services.errors import Forbidden, NotFound, Unauthorized

KEY_PREFIX = "tl_"
VISIBLE_PREFIX_CHARS = 11  # "tl_" + 8 characters
# Avoid a write on every request: refresh last_used_at at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """The caller behind an API key."""

    tenant_id: uuid.UUID
    tenant_name: str
    key_id: uuid.UUID
    is_admin: bool

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this action needs an admin key")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def ensure_tenant(session: Session, name: str) -> Tenant:
    repo = TenantRepository(session)
    tenant = repo.by_name(name)
    if tenant is None:
        tenant = repo.add(Tenant(name=name, webhook_secret=generate_webhook_secret()))
    return tenant


def create_key(
    session: Session, tenant_name: str, *, admin: bool = False, name: str = "", key: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for a tenant (made if new); the plain key is returned once, never stored."""
    tenant = ensure_tenant(session, tenant_name)
    plain = key or generate_key()
    record = TenantRepository(session).add_key(
        ApiKey(tenant_id=tenant.id, prefix=plain[:VISIBLE_PREFIX_CHARS], key_hash=hash_key(plain), name=name, is_admin=admin)
    )
    AuditRepository(session).record(
        "key.create", tenant_id=tenant.id, target=f"key:{record.id}", details={"admin": admin, "prefix": record.prefix}
    )
    return record, plain


def ensure_key(session: Session, tenant_name: str, plain: str, *, admin: bool) -> ApiKey:
    """Make sure a known key exists (bootstrap key from settings, the demo key)."""
    existing = TenantRepository(session).key_by_hash(hash_key(plain))
    if existing is not None:
        return existing
    record, _ = create_key(session, tenant_name, admin=admin, name="bootstrap", key=plain)
    return record


def authenticate(session: Session, presented: str | None) -> Principal:
    if not presented:
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    key = TenantRepository(session).key_by_hash(hash_key(presented))
    if key is None or key.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key")
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
    return Principal(tenant_id=key.tenant_id, tenant_name=key.tenant.name, key_id=key.id, is_admin=key.is_admin)


def list_keys(session: Session, principal: Principal) -> list[ApiKey]:
    principal.require_admin()
    return TenantRepository(session).all_keys()


def revoke_key(session: Session, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    principal.require_admin()
    key = TenantRepository(session).key(key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        AuditRepository(session).record(
            "key.revoke", tenant_id=key.tenant_id, api_key_id=principal.key_id, target=f"key:{key.id}"
        )
    return key


def webhook_secret(session: Session, principal: Principal) -> str:
    tenant = TenantRepository(session).get(principal.tenant_id)
    assert tenant is not None  # the principal was made from this tenant's key
    return tenant.webhook_secret
