"""Fixtures for the service tests: a real PostgreSQL database per test session (and the
SQLite path too), Alembic migrations applied, a tiny trained `generic` model, and the
real service (uvicorn on a loopback port + the in-process worker) serving it.

In CI (CI=true) a PostgreSQL that cannot be reached is a failure, not a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from twinlens.cli.service import EmbeddedService, train_sample_model
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys
from twinlens.settings import Settings

from service_db import fresh_database, service_settings  # noqa: F401  (fixtures below and tests use them)

@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty database for this test session, dropped at the end."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def empty_postgres_url() -> Iterator[str]:
    """Another fresh database that nothing has migrated yet (for migration tests)."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def generic_bundle(tmp_path_factory) -> Path:
    """A tiny `generic` model trained on the plugin's sample data (seconds, not minutes)."""
    bundle = tmp_path_factory.mktemp("models") / "generic-tiny"
    return train_sample_model("generic", bundle, rows=60, epochs=1, tiny=True)


@dataclass
class RunningService:
    backend: str
    url: str
    settings: Settings
    db: Database
    admin_key: str
    service: EmbeddedService

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def new_tenant_key(self, *, admin: bool = False) -> str:
        with self.client() as client:
            response = client.post("/v1/keys", json={"tenant": f"t-{uuid.uuid4().hex[:10]}", "admin": admin})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    def blob_path(self, sha256: str) -> Path:
        return self.service.worker.context.blobs.path_for(sha256)


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def live(request, tmp_path_factory, generic_bundle) -> Iterator[RunningService]:
    """The real service over real HTTP, on PostgreSQL and on the embedded SQLite default."""
    data_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{data_dir / 'twinlens.db'}"
    # The tests name bundles, data and output folders under pytest's temporary folder.
    roots = [tmp_path_factory.getbasetemp()]
    settings = service_settings(data_dir, url, model_roots=roots, data_roots=roots, output_roots=roots)
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        # The operator's key: it makes the tenants (and keys) each test asks for.
        _, admin_key = keys.create_key(session, f"admin-{request.param}", platform_admin=True)
    service = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
    running = RunningService(request.param, service.url, settings, database, admin_key, service)
    with running.client() as client:
        response = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "activate": True})
        assert response.status_code in (201, 409), response.text
    try:
        yield running
    finally:
        service.close()


@pytest.fixture(scope="session")
def second_generic_bundle(tmp_path_factory) -> Path:
    """Another version of the tiny `generic` model (other seed, so another content hash)."""
    bundle = tmp_path_factory.mktemp("models") / "generic-tiny-2"
    return train_sample_model("generic", bundle, rows=40, epochs=1, tiny=True, seed=1)
