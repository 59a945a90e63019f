"""A database that is away (restarting, failing over, unreachable) answers 503, not 500.

The request changed nothing (its transaction rolled back with the connection), so the
client may send it again after Retry-After; an Idempotency-Key makes that safe for job
submissions. Any other database error is a bug and goes on to the 500 handler.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from twinlens.api.problems import problem_response
from twinlens.db.availability import database_unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def install_outage_handlers(app: FastAPI) -> None:
    for error in (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError):
        app.add_exception_handler(error, _database_error)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        raise exc  # the server-error handler logs it and answers 500
    # The driver's text (host, port, database) is for the operator's log, never the client.
    log.warning("database unavailable on %s %s: %s: %s", request.method, request.url.path, exc.__class__.__name__,
                str(getattr(exc, "orig", None) or exc).strip())
    return problem_response(
        503, "the database is not reachable right now; nothing was changed, try again shortly",
        kind="database-unavailable", instance=request.url.path, headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
