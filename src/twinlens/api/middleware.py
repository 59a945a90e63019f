"""ASGI middleware: request-size ceiling, rate-limit headers and request metrics; and the
rate-limit dependency whose decision the headers report.

Rate limits are a dependency, not a middleware of their own: they need the caller's key
and tenant, which only authentication (a dependency) knows. The dependency spends the
tokens and leaves its decision in the request's state; `RateLimitHeadersMiddleware`
writes it on whatever answer goes out (a route's, a 404, a 422).
"""

from __future__ import annotations

import time

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinlens.api.deps import ApiKeyDep
from twinlens.api.problems import input_problem
from twinlens.services.metrics import REQUEST_SECONDS, REQUESTS
from twinlens.services.rate_limits import Decision

RATE_LIMIT_STATE = "rate_limit"


class BodyLimitMiddleware:
    """413 for bodies over the limit: early from Content-Length, else while streaming
    (chunked uploads), before the whole body is ever held in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, bulk_max_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        # A batch upload (POST .../batches) carries a whole file: its own, larger limit.
        self.bulk_max_bytes = bulk_max_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.bulk_max_bytes if scope.get("method") == "POST" and scope["path"].endswith("/batches") else self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = input_problem(413, "body", self._message(declared, limit), instance=scope["path"])
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive, limit), send)

    def _counting(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException, not an InputError: FastAPI turns anything else raised
                    # while it reads a JSON body into a 400. problems.py names the field.
                    raise HTTPException(413, self._message(seen, limit))
            return message

        return counted

    @staticmethod
    def _message(size: int, limit: int) -> str:
        return f"the request body is {size} bytes or more; the limit is {limit}"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def enforce_rate_limit(request: Request, principal: ApiKeyDep) -> None:
    """Spend the caller's tokens (429 when over a limit); after authentication, before the
    route reads a byte of the body. Sync: the Redis round trip runs on a worker thread."""
    decision = request.app.state.rate_limiter.check(principal)
    if decision is not None:
        setattr(request.state, RATE_LIMIT_STATE, decision)


class RateLimitHeadersMiddleware:
    """RateLimit-Limit / -Remaining / -Reset on every answer to a rate-limited request, so
    a client can pace itself before it is ever refused."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            decision: Decision | None = scope.get("state", {}).get(RATE_LIMIT_STATE)
            if message["type"] == "http.response.start" and decision is not None:
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers().items():
                    headers.setdefault(name, value)  # a 429 already carries its own
            await send(message)

        await self.app(scope, receive, send_with_headers)


class MetricsMiddleware:
    """Counts and times every request by route; each answer also says, in a
    `Server-Timing: app;dur=<ms>` header, how long the service took to start it, so a
    client can tell time spent in the service from time on the wire."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                took = (time.perf_counter() - started) * 1000
                MutableHeaders(scope=message).append("server-timing", f"app;dur={took:.2f}")
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], template, str(status["code"])).inc()
            REQUEST_SECONDS.labels(scope["method"], template).observe(time.perf_counter() - started)
