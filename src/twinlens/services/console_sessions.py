"""Web console sessions: an API key exchanged for a session, and the CSRF token bound to it.

The browser holds a random session token in an HTTP-only cookie; the database holds its
SHA-256 only. The CSRF token of a session is an HMAC of the session token (nothing more is
stored): a page's forms carry it, every POST must send it back, and a page on another site,
which can make the browser send the cookie but cannot read it, cannot compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.console_tables import ConsoleLoginLink, ConsoleSession
from twinlens.db.models import ApiKey
from twinlens.db.repositories import AuditRepository
from twinlens.db.repositories.console import ConsoleRepository
from twinlens.services import keys
from twinlens.services.errors import Forbidden, Unauthorized
from twinlens.services.keys import Principal

SESSION_LIFETIME = timedelta(hours=12)
# A session nobody used for this long ends, whatever its lifetime says.
SESSION_IDLE_LIMIT = timedelta(hours=2)
# Refresh last_seen_at at most this often: a write per page view costs for nothing.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
LOGIN_LINK_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class ConsoleLogin:
    """Who a console request is: the key's principal and the session it came through."""

    principal: Principal
    session_id: uuid.UUID
    csrf_token: str
    key_prefix: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"twinlens-console-csrf", hashlib.sha256).hexdigest()


def check_csrf(expected: str, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(expected, presented):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again")


def login_with_key(session: Session, api_key: str) -> tuple[str, ConsoleLogin]:
    """A new session for a valid key: (the token for the cookie, the login)."""
    principal = keys.authenticate(session, (api_key or "").strip() or None)
    return _open_session(session, principal, via="key")


def login_with_link(session: Session, link_token: str) -> tuple[str, ConsoleLogin]:
    """Spend a one-time login link: a used, expired or unknown one is refused alike."""
    link = ConsoleRepository(session).link_by_hash(token_hash(link_token))
    now = utcnow()
    if link is None or link.used_at is not None or link.expires_at <= now:
        raise Unauthorized("this login link is unknown, used or expired; log in with an API key")
    link.used_at = now
    key = ConsoleRepository(session).key(link.api_key_id)
    if key is None or key.revoked_at is not None:
        raise Unauthorized("the key behind this login link was revoked")
    return _open_session(session, _principal(key), via="link")


def create_login_link(session: Session, api_key: str) -> str:
    """A one-time login link token for a key (the operator's function: `twinlens demo`
    prints the link); the link opens a session of that key once, within the hour."""
    principal = keys.authenticate(session, api_key)
    token = secrets.token_urlsafe(32)
    ConsoleRepository(session).add(ConsoleLoginLink(
        token_hash=token_hash(token), api_key_id=principal.key_id, expires_at=utcnow() + LOGIN_LINK_LIFETIME))
    return token


def resume(session: Session, session_token: str | None) -> ConsoleLogin:
    """The login behind a cookie; Unauthorized when there is none that still holds (ended,
    expired, idle too long, or its key revoked)."""
    if not session_token:
        raise Unauthorized("log in to the console")
    repo = ConsoleRepository(session)
    row = repo.session_by_hash(token_hash(session_token))
    now = utcnow()
    if row is None or row.ended_at is not None or row.expires_at <= now or now - row.last_seen_at > SESSION_IDLE_LIMIT:
        raise Unauthorized("your console session ended; log in again")
    key = repo.key(row.api_key_id)
    if key is None or key.revoked_at is not None:
        raise Unauthorized("the API key of this session was revoked")
    if now - row.last_seen_at > LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return ConsoleLogin(_principal(key), row.id, csrf_token_for(session_token), key.prefix)


def logout(session: Session, login: ConsoleLogin) -> None:
    row = session.get(ConsoleSession, login.session_id)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        AuditRepository(session).record("console.logout", tenant_id=login.principal.tenant_id,
                                        api_key_id=login.principal.key_id, target=f"console_session:{row.id}")


def _open_session(session: Session, principal: Principal, *, via: str) -> tuple[str, ConsoleLogin]:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSession(token_hash=token_hash(token), tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                         created_at=now, last_seen_at=now, expires_at=now + SESSION_LIFETIME)
    ConsoleRepository(session).add(row)
    AuditRepository(session).record("console.login", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"console_session:{row.id}", details={"via": via})
    key = ConsoleRepository(session).key(principal.key_id)
    return token, ConsoleLogin(principal, row.id, csrf_token_for(token), key.prefix if key else "")


def _principal(key: ApiKey) -> Principal:
    # The same principal keys.authenticate makes from the key itself.
    return Principal(tenant_id=key.tenant_id, tenant_name=key.tenant.name, key_id=key.id,
                     is_admin=key.is_admin or key.is_platform_admin, is_platform_admin=key.is_platform_admin)
