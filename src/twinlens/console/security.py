"""What keeps the console safe in a browser: the session cookie, CSRF checks on every POST,
the security headers (a strict Content-Security-Policy among them) and the login
dependency every page but the login page depends on."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.datastructures import FormData, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinlens.api.deps import SessionDep
from twinlens.logging_setup import bind_log_context
from twinlens.services import console_sessions
from twinlens.services.console_sessions import SESSION_LIFETIME, ConsoleLogin

PREFIX = "/console"
SESSION_COOKIE = "twinlens_console"
# Before login there is no session to bind a CSRF token to: the login form's token is a
# random value also set as a cookie (double submit), so a page on another site cannot log
# a browser into an attacker's tenant.
LOGIN_CSRF_COOKIE = "twinlens_console_login"
CSRF_FIELD = "csrf_token"

# No inline script or style, nothing from another origin, no framing, no plugins, forms
# post only here. Images: the service's own, plus blob: for the drag-and-drop preview.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob:",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ConsoleHeadersMiddleware:
    """The security headers on every answer under /console; pages (not static files) are
    not cached either, since they show a tenant's cases."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not path.startswith(PREFIX + "/static/"):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def current_login(request: Request, session: SessionDep) -> ConsoleLogin:
    """The session behind the cookie (else Unauthorized, which sends a browser to the login
    page), with the key's rate limits spent as for any API request."""
    login = console_sessions.resume(session, request.cookies.get(SESSION_COOKIE))
    request.app.state.rate_limiter.check(login.principal)
    bind_log_context(tenant=login.principal.tenant_name)
    return login


LoginDep = Annotated[ConsoleLogin, Depends(current_login)]


def check_form_csrf(login: ConsoleLogin, form: FormData) -> None:
    value = form.get(CSRF_FIELD)
    console_sessions.check_csrf(login.csrf_token, value if isinstance(value, str) else None)


def check_login_csrf(request: Request, form: FormData) -> None:
    value = form.get(CSRF_FIELD)
    console_sessions.check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE) or "", value if isinstance(value, str) else None)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_login_csrf_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path=PREFIX, httponly=True, samesite="strict",
                        secure=_secure(request))


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    # Lax, not Strict: the one-time link `twinlens demo` prints is opened from outside the
    # site, and its redirect must carry the new cookie. Every POST needs the CSRF token.
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path=PREFIX, httponly=True,
                        samesite="lax", secure=_secure(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)


def _secure(request: Request) -> bool:
    """Secure cookies whenever the browser came over HTTPS (a plain-HTTP loopback demo
    could not store them)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"
