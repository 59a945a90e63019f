"""RFC 9457 problem details for every error the API answers."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from twinlens.contract.errors import InputError, UnknownPluginError
from twinlens.services.errors import ServiceError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://twinlens.dev/problems/"


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (extension members allowed)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


# One title per status, whatever the cause: RFC 9110's names (Python's HTTPStatus still has
# RFC 7231's "Request Entity Too Large" and "Unprocessable Entity"); the cause is in `type`.
RFC_9110_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}
# An input problem's `type` by its status, so each type keeps one title (RFC 9457 3.1.3).
INPUT_PROBLEM_KINDS = {413: "too-large", 415: "unsupported-media-type", 422: "invalid-input"}


def problem_response(
    status: int, detail: str | None = None, *, kind: str | None = None,
    instance: str | None = None, headers: dict[str, str] | None = None, extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"{TYPE_BASE}{kind}" if kind else "about:blank",
        "title": status_title(status),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    # Extension members never replace the standard ones.
    body.update({k: v for k, v in (extensions or {}).items() if v is not None and k not in body and k != "instance"})
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_title(status: int) -> str:
    """The title of every problem answered with `status`."""
    if status in RFC_9110_TITLES:
        return RFC_9110_TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def input_problem(status: int, field: str, reason: str, *, instance: str | None = None) -> JSONResponse:
    """One input (a form field, the image, the body) cannot be used: the answer names it."""
    return problem_response(
        status, f"{field}: {reason}", kind=INPUT_PROBLEM_KINDS.get(status, "invalid-input"),
        instance=instance, extensions={"errors": [{"field": field, "reason": reason}]},
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(UnknownPluginError, _unknown_plugin)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Exception, _unexpected)


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 413:
        # The body-size ceiling, hit while the body streamed in: a problem naming the body,
        # like the one answered from Content-Length before a byte is read.
        return input_problem(413, "body", detail or "the request body is too large", instance=request.url.path)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method any route serves at this path (Starlette's own Allow header names
    only the first matching route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": ".".join(str(part) for part in error.get("loc", ())), "reason": error.get("msg", "")}
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"field": "", "reason": "invalid request"}
    return problem_response(
        422, f"{first['field']}: {first['reason']}", kind="validation",
        instance=request.url.path, extensions={"errors": errors},
    )


async def _input_error(request: Request, exc: InputError) -> JSONResponse:
    return input_problem(exc.status, exc.field, exc.reason, instance=request.url.path)


async def _unknown_plugin(request: Request, exc: UnknownPluginError) -> JSONResponse:
    return problem_response(404, str(exc), kind="unknown-plugin", instance=request.url.path)


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    # An error may carry headers of its own (a 429's Retry-After and RateLimit-*).
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return problem_response(
        exc.status, exc.detail, kind=type(exc).__name__.lower(),
        instance=request.url.path, headers=headers or None, extensions=exc.extensions,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "an internal error occurred; it has been logged", instance=request.url.path)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem+json answers."""
    return {
        status: {"description": status_title(status), "model": Problem, "content": {PROBLEM_JSON: {}}}
        for status in statuses
    }
