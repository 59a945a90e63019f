"""Telling a database that is away (down, restarting, unreachable) from a query it refused.

The first is worth retrying (the API answers 503, a worker hands its jobs back); the
second is a bug or a conflict and must surface as one.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

# SQLite raises OperationalError for mistakes too ("no such table"); only these mean "wait".
SQLITE_BUSY_MESSAGES = ("database is locked", "unable to open database file", "disk i/o error")


def database_unavailable(error: BaseException) -> bool:
    """True when `error` says the database could not be reached or is restarting."""
    if isinstance(error, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return False
    if isinstance(error.orig, sqlite3.Error):
        message = str(error.orig).lower()
        return any(busy in message for busy in SQLITE_BUSY_MESSAGES)
    # psycopg: connection refused or lost, "the database system is shutting down / starting
    # up", an administrator's termination: all operational, all worth a retry.
    return True
