"""Tenants, API keys and who a request is."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.models import ApiKey, Tenant
from twinlens.db.repositories import AuditRepository, TenantRepository
from twinlens.services import webhook_secrets
from twinlens.services.errors import Forbidden, NotFound, Unauthorized
from twinlens.services.webhook_secrets import SecretBox

KEY_PREFIX = "tl_"
VISIBLE_PREFIX_CHARS = 11  # "tl_" + 8 characters
# Avoid a write on every request: refresh last_used_at at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """The caller behind an API key.

    Three roles: a plain key uses its tenant's models and jobs; a tenant admin
    (`is_admin`) also manages its own tenant's keys, models and training; a platform admin
    (`is_platform_admin`, made only by the CLI) also acts on global models and on every
    tenant.
    """

    tenant_id: uuid.UUID
    tenant_name: str
    key_id: uuid.UUID
    is_admin: bool
    is_platform_admin: bool = False

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this action needs an admin key")

    def require_platform_admin(self, action: str) -> None:
        if not self.is_platform_admin:
            raise Forbidden(f"{action} needs a platform admin key (made with `twinlens keys create --platform-admin`)")

    def may_act_on(self, tenant_id: uuid.UUID | None) -> bool:
        """Whether this key may manage what belongs to `tenant_id` (None: global)."""
        return self.is_platform_admin or (tenant_id is not None and tenant_id == self.tenant_id)


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_tenant(session: Session, name: str) -> Tenant:
    repo = TenantRepository(session)
    tenant = repo.by_name(name)
    if tenant is None:
        tenant = repo.add(Tenant(name=name))  # its webhook secret is made, sealed, on first need
    return tenant


def create_key(
    session: Session, tenant_name: str, *, admin: bool = False, platform_admin: bool = False, name: str = "",
    key: str | None = None, by: Principal | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for a tenant (made if new); the plain key is returned once, never stored.

    The operator's function (CLI, startup): no check of who asks. A platform admin key is
    an admin key too. HTTP callers go through `create_key_for`.
    """
    tenant = ensure_tenant(session, tenant_name)
    plain = key or generate_key()
    record = TenantRepository(session).add_key(ApiKey(
        tenant_id=tenant.id, prefix=plain[:VISIBLE_PREFIX_CHARS], key_hash=hash_key(plain), name=name,
        is_admin=admin or platform_admin, is_platform_admin=platform_admin,
    ))
    AuditRepository(session).record(
        "key.create", tenant_id=tenant.id, api_key_id=by.key_id if by else None, target=f"key:{record.id}",
        details={"admin": record.is_admin, "platform_admin": platform_admin, "prefix": record.prefix},
    )
    return record, plain


def create_key_for(session: Session, principal: Principal, tenant_name: str | None, *, admin: bool, name: str) -> tuple[ApiKey, str]:
    """POST /v1/keys: a tenant admin makes keys of its own tenant; a platform admin, of any
    tenant (made if new). No request makes a platform admin key.

    Another tenant's name is refused with 403 whether that tenant exists or not, so the
    answer tells nothing about other tenants."""
    principal.require_admin()
    tenant_name = tenant_name or principal.tenant_name
    if tenant_name != principal.tenant_name and not principal.is_platform_admin:
        raise Forbidden("a tenant admin key creates keys for its own tenant only")
    return create_key(session, tenant_name, admin=admin, name=name, by=principal)


def ensure_key(session: Session, tenant_name: str, plain: str, *, admin: bool, platform_admin: bool = False) -> ApiKey:
    """Make sure a known key exists with at least the given role (the bootstrap key from
    settings: one made before roles existed becomes the platform admin it is meant to be)."""
    existing = TenantRepository(session).key_by_hash(hash_key(plain))
    if existing is not None:
        if platform_admin and not existing.is_platform_admin:
            existing.is_admin = existing.is_platform_admin = True
            AuditRepository(session).record("key.promote", tenant_id=existing.tenant_id, target=f"key:{existing.id}",
                                            details={"platform_admin": True})
        return existing
    record, _ = create_key(session, tenant_name, admin=admin, platform_admin=platform_admin, name="bootstrap", key=plain)
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
    return Principal(tenant_id=key.tenant_id, tenant_name=key.tenant.name, key_id=key.id,
                     is_admin=key.is_admin or key.is_platform_admin, is_platform_admin=key.is_platform_admin)


def list_keys(session: Session, principal: Principal) -> list[ApiKey]:
    """A tenant admin sees its own tenant's keys; a platform admin, every key."""
    principal.require_admin()
    repo = TenantRepository(session)
    return repo.all_keys() if principal.is_platform_admin else repo.keys_of(principal.tenant_id)


def revoke_key(session: Session, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    """Another tenant's key is a 404 to a tenant admin (as if it did not exist); a platform
    admin key of its own tenant, which it can list, a 403."""
    principal.require_admin()
    key = TenantRepository(session).key(key_id)
    if key is None or not principal.may_act_on(key.tenant_id):
        raise NotFound(f"no API key {key_id}")
    if key.is_platform_admin and not principal.is_platform_admin:
        raise Forbidden("a platform admin key is revoked by a platform admin (or the operator)")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        AuditRepository(session).record(
            "key.revoke", tenant_id=key.tenant_id, api_key_id=principal.key_id, target=f"key:{key.id}"
        )
    return key


# -- the tenant's webhook signing secret ------------------------------------------------------


@dataclass(frozen=True)
class TenantSecretState:
    """What GET /v1/tenant shows: the secret only to admin keys (None to others)."""

    webhook_secret: str | None
    previous_secret_valid_until: datetime | None


def tenant_secret_state(session: Session, principal: Principal, box: SecretBox) -> TenantSecretState:
    tenant = _own_tenant(session, principal)
    secret = webhook_secrets.current_secret(session, tenant, box) if principal.is_admin else None
    return TenantSecretState(secret, webhook_secrets.previous_valid_until(tenant))


def rotate_webhook_secret(session: Session, principal: Principal, box: SecretBox, overlap: timedelta) -> webhook_secrets.Rotation:
    """A new signing secret for the caller's tenant (admin); the old one keeps signing
    deliveries for `overlap`."""
    principal.require_admin()
    rotation = webhook_secrets.rotate(session, principal.tenant_id, box, overlap)
    AuditRepository(session).record(
        "tenant.webhook_secret.rotate", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
        target=f"tenant:{principal.tenant_id}", details={"overlap_seconds": overlap.total_seconds()},
    )
    return rotation


def _own_tenant(session: Session, principal: Principal) -> Tenant:
    tenant = TenantRepository(session).get(principal.tenant_id)
    assert tenant is not None  # the principal was made from this tenant's key
    return tenant
