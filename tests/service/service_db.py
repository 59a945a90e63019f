"""PostgreSQL databases and settings for the service tests.

A module of its own (not conftest.py) so tests can import it by a unique name: several
conftest modules exist in the suite and `from conftest import ...` would reach whichever
was imported last.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from twinlens.settings import Settings

PG_HOST = os.environ.get("TWINLENS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TWINLENS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TWINLENS_TEST_PG_USER", "postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped when the block ends."""
    admin = _admin_connection()
    name = f"twinlens_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def service_settings(data_dir: Path, database_url: str, **overrides) -> Settings:
    values = dict(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=None,
        max_upload_bytes=300_000,
        max_image_pixels=1_000_000,
        max_text_chars=2_000,
        max_wait_seconds=30.0,
        allow_private_webhooks=True,  # the test receivers listen on loopback
        webhook_retry_base_seconds=0.2,
        webhook_retry_max_seconds=1.0,
        webhook_timeout_seconds=5.0,
        retention_days=30.0,
    )
    values.update(overrides)
    return Settings(**values)
