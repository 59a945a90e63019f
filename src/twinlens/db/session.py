"""Engines, sessions and the unit-of-work boundary.

Services never commit. The request (FastAPI dependency) or the task (worker) owns the
session and commits; work that must only happen once the data is durable (publishing a
job id to the broker) is registered with `after_commit` and runs after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

_AFTER_COMMIT = "twinlens_after_commit"


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo)
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # Let SQLAlchemy issue BEGIN itself (pysqlite's implicit transactions defer the
        # write lock, so two writers can deadlock on upgrade instead of waiting).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        # Take the write lock up front: writers queue on busy_timeout instead of failing
        # with "database is locked" when a read transaction later tries to write.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """An engine plus its session factory; one per process and database URL."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.engine = create_db_engine(url, echo=echo)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self.session_factory, "after_commit", _run_after_commit)
        event.listen(self.session_factory, "after_soft_rollback", _drop_after_commit)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends cleanly, rolls back otherwise."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction has committed."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the data is committed; a sweep re-publishes what was missed
            log.exception("after-commit callback failed")


def _drop_after_commit(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)
