"""The web console for the people who act on predictions, served by the API under
/console: the review queue, cases, keyboard-first corrections, submitting a case and the
models page. Server-rendered Jinja2 templates plus one small script and one stylesheet,
all served by the service itself (no CDN), behind a strict Content-Security-Policy.

It sits at the API's level: routes parse, authorise through a console session, call one
service and render a template. See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def install_console(app: FastAPI) -> None:
    """Mount the console's pages, its static files and its security headers on the API."""
    from twinlens.console.routes import router
    from twinlens.console.security import ConsoleHeadersMiddleware

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.add_middleware(ConsoleHeadersMiddleware)
