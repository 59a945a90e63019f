"""Rendering: the Jinja2 templates, and the route class that turns a failed request into
an HTML page (or, for a browser without a session, the login page) instead of the API's
problem+json."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from twinlens.api.problems import status_title
from twinlens.contract.errors import InputError, UnknownPluginError
from twinlens.services.errors import ServiceError, Unauthorized

log = logging.getLogger(__name__)

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * float(value):.0f}%"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters.update(percent=_percent, when=_when, short=lambda value: str(value)[:8])


def page(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


def error_page(request: Request, status: int, detail: str, login: Any = None) -> HTMLResponse:
    return page(request, "error.html", {"status": status, "title": status_title(status), "detail": detail, "login": login},
                status=status)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)


class ConsoleRoute(APIRoute):
    """Errors as pages: a missing or ended session sends a GET to the login page (a POST
    gets a 401 page: replaying it after login could repeat an action); any other service,
    input or validation error is a page with its status and its message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthorized as exc:
                if request.method == "GET":
                    return login_redirect(request)
                return error_page(request, 401, exc.detail)
            except ServiceError as exc:
                response = error_page(request, exc.status, exc.detail)
                response.headers.update(getattr(exc, "headers", None) or {})
                return response
            except InputError as exc:
                return error_page(request, exc.status, f"{exc.field}: {exc.reason}")
            except UnknownPluginError as exc:
                return error_page(request, 404, str(exc))
            except RequestValidationError as exc:
                first = (exc.errors() or [{}])[0]
                where = ".".join(str(part) for part in first.get("loc", ()))
                return error_page(request, 422, f"{where}: {first.get('msg', 'invalid request')}")
            except HTTPException as exc:
                if exc.status_code == 413:
                    return error_page(request, 413, str(exc.detail))
                raise

        return handle
