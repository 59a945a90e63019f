"""Tenants' webhook signing secrets: sealed at rest with Fernet, rotated with an overlap.

The database holds each secret only as a Fernet token made with the service's secrets key
(TWINLENS_SECRETS_KEY; in development a key generated into data_dir/secrets.key), so a
copy of the database alone cannot sign a webhook. A rotation keeps the previous secret for
an overlap window, during which deliveries carry a signature from each.
"""

from __future__ import annotations

import base64
import os
import uuid
import secrets as random_source
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.models import Tenant
from twinlens.settings import Settings

SECRET_PREFIX = "whsec_"


class SecretsKeyError(RuntimeError):
    """A sealed secret does not open with the configured key(s): the key was changed or lost."""


@dataclass(frozen=True)
class SecretBox:
    """Seals and opens secrets with the service's key(s); the first key seals."""

    fernet: MultiFernet

    def seal(self, plain: str) -> str:
        return self.fernet.encrypt(plain.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretsKeyError("a webhook secret does not open with TWINLENS_SECRETS_KEY: was the key replaced "
                                  "without keeping the old one after it?") from None


def secret_box(settings: Settings) -> SecretBox:
    keys = settings.secrets_key_list or [_development_key(settings.secrets_key_file)]
    return SecretBox(MultiFernet([Fernet(key) for key in keys]))


def _development_key(path: Path) -> str:
    """The key in data_dir, made on first use."""
    if not path.exists():
        _create_key_file(path)
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise SecretsKeyError(f"{path.name} in the data directory is empty; restore it or set TWINLENS_SECRETS_KEY")
    return key


def _create_key_file(path: Path) -> None:
    """Written aside, then linked into place: a reader never sees half a key, and when an
    API and workers start together on one data_dir, the first link wins and all use it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{random_source.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(Fernet.generate_key().decode())
    try:
        os.link(aside, path)
    except FileExistsError:
        pass  # another process made it first; its key is the one
    finally:
        aside.unlink()


def generate_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(32)).decode()


# -- one tenant's secrets ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    secret: str
    previous_valid_until: datetime | None


def current_secret(session: Session, tenant: Tenant, box: SecretBox) -> str:
    """The tenant's signing secret, made (or sealed from a pre-0003 clear one) on first need.
    Set by a conditional update: of two requests making it at once, one secret wins and
    both answer with it."""
    if tenant.webhook_secret_sealed is None:
        plain = tenant.legacy_webhook_secret or generate_webhook_secret()
        session.execute(
            update(Tenant).where(Tenant.id == tenant.id, Tenant.webhook_secret_sealed.is_(None))
            .values(webhook_secret_sealed=box.seal(plain), legacy_webhook_secret=None)
            .execution_options(synchronize_session=False)
        )
        session.refresh(tenant)
    return box.open(tenant.webhook_secret_sealed)


def signing_secrets(session: Session, tenant: Tenant, box: SecretBox, now: datetime | None = None) -> list[str]:
    """Every secret a delivery is signed with now: the current one, then the previous one
    while its overlap lasts."""
    found = [current_secret(session, tenant, box)]
    if _previous_still_valid(tenant, now or utcnow()):
        found.append(box.open(tenant.previous_webhook_secret_sealed))
    return found


def _previous_still_valid(tenant: Tenant, now: datetime) -> bool:
    expires = tenant.previous_webhook_secret_expires_at
    return tenant.previous_webhook_secret_sealed is not None and expires is not None and now < expires


def rotate(session: Session, tenant_id: uuid.UUID, box: SecretBox, overlap: timedelta) -> Rotation:
    """A new current secret; the old one keeps signing for `overlap` (not at all when zero).
    A secret still in an earlier rotation's overlap is dropped at once: two at most sign.
    The row is locked, so two rotations at once run one after the other."""
    tenant = session.get(Tenant, tenant_id, with_for_update=True, populate_existing=True)
    old = current_secret(session, tenant, box)
    fresh = generate_webhook_secret()
    until = utcnow() + overlap if overlap > timedelta(0) else None
    tenant.webhook_secret_sealed = box.seal(fresh)
    tenant.previous_webhook_secret_sealed = box.seal(old) if until else None
    tenant.previous_webhook_secret_expires_at = until
    session.flush()
    return Rotation(fresh, until)


def seal_legacy_secrets(session: Session, box: SecretBox) -> int:
    """Seal every clear secret left from before migration 0003; the count sealed."""
    tenants = list(session.scalars(select(Tenant).where(Tenant.legacy_webhook_secret.is_not(None))))
    for tenant in tenants:
        if tenant.webhook_secret_sealed is None:
            current_secret(session, tenant, box)
        else:  # sealed already (a rotation ran): the clear copy is stale
            tenant.legacy_webhook_secret = None
    session.flush()
    return len(tenants)


def previous_valid_until(tenant: Tenant, now: datetime | None = None) -> datetime | None:
    """When the rotated-out secret stops signing; None when none signs any more."""
    return tenant.previous_webhook_secret_expires_at if _previous_still_valid(tenant, now or utcnow()) else None
