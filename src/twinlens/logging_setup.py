"""Log lines of the API and the workers.

In production (`TWINLENS_ENV=production`) every line is one JSON object: timestamp, level,
logger, message, and where known the request id, tenant, job id, model version and
duration; log shippers index them without parsing text. In development the same fields
follow a plain text line.

The fields come from a context variable: the API's request middleware opens a context per
request (request id), authentication adds the tenant to it, and the worker opens one per
job (job id, model version). Code that logs needs to know none of this.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("request_id", "tenant", "job_id", "model_version", "duration_ms")
_context: ContextVar[dict[str, Any] | None] = ContextVar("twinlens_log_context", default=None)
# Marks the handler configure_logging installed, so configuring again replaces it.
_OURS = "_twinlens_handler"


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Every line logged inside the block carries these fields (None values are left out);
    the block's context is returned so later fields can be added to it."""
    merged = {**(_context.get() or {}), **{name: value for name, value in fields.items() if value is not None}}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Add fields to the enclosing block's context, in place: FastAPI runs a synchronous
    dependency (authentication) on a copy of the request's context, and only an in-place
    change of the shared dict reaches the request's later lines."""
    current = _context.get()
    if current is not None:
        current.update({name: value for name, value in fields.items() if value is not None})


def current_log_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the context's fields onto each record (a field given with `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger: message [request_id=... tenant=...]` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        known = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None) is not None]
        return f"{line} [{' '.join(known)}]" if known else line


def json_formatter() -> logging.Formatter:
    # timestamp=True adds an ISO 8601 UTC "timestamp"; the record's extra attributes
    # (the context fields among them) become keys of their own.
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


class _ProcessStderrHandler(logging.StreamHandler):
    """Writes to the process's own stderr, looked up when a line is logged: Celery swaps
    sys.stderr for a proxy that logs what is written to it (a line would go round in a
    circle and be dropped), and a test runner swaps it per test."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.__stderr__ or sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(env: str, level: int = logging.INFO) -> None:
    """Install the service's handler on the root logger (replacing one installed before);
    other handlers are left alone, and a more verbose root level is kept."""
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if getattr(handler, _OURS, False)]:
        root.removeHandler(handler)
    handler = _ProcessStderrHandler()
    setattr(handler, _OURS, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter() if env == "production" else PlainFormatter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    # Warnings (Celery's, a library's deprecation) become log lines too: JSON in production.
    logging.captureWarnings(env == "production")
    if env == "production":
        _uvicorn_through_root()


def uvicorn_log_config(env: str) -> dict[str, Any] | None:
    """What `uvicorn.Config(log_config=...)` gets. In production None: uvicorn then installs
    no text handlers of its own, and its lines, from "Started server process" on, reach the
    JSON handler (call configure_logging first)."""
    if env == "production":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def _uvicorn_through_root() -> None:
    """uvicorn writes its own text lines; in production its lines go through the JSON
    handler instead, and its access line is left out: the request middleware writes one
    with the request id, tenant and duration (api/request_context.py)."""
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
