"""Per-request log context: a request id for every line the request logs, echoed to the
client as `X-Request-ID`, and one line per request with its status and duration."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinlens.logging_setup import log_context

REQUEST_ID_HEADER = b"x-request-id"
# A caller's (or a proxy's) own id is kept when it is a plain token; anything else could
# forge or break log lines, and is replaced by a fresh id.
_USABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = logging.getLogger("twinlens.api.requests")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_request_id)
            finally:
                _log_request(scope, status["code"], time.perf_counter() - started)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            given = value.decode("latin-1")
            if _USABLE_REQUEST_ID.match(given):
                return given
    return uuid.uuid4().hex


def _log_request(scope: Scope, status: int, seconds: float) -> None:
    # The route's template, not the path: a path can hold a subject reference or other
    # identifiers the log must not keep (DELETE /v1/subjects/{subject_ref}).
    route = getattr(scope.get("route"), "path", "unmatched")
    log.info(
        "%s %s %d", scope["method"], route, status,
        extra={"method": scope["method"], "route": route, "status": status, "duration_ms": round(seconds * 1000.0, 2)},
    )
