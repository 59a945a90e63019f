"""Paths in admin requests stay inside the configured roots, over real HTTP on PostgreSQL and
SQLite: a relative path, `..`, a symlink out of a root or a path elsewhere is a 422 naming
the field, without the server's working directory or where the path leads, and writes
nothing. The defaults are folders under data_dir."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
from service_db import service_settings
from service_helpers import problem
from sqlalchemy import func, select

from twinlens.cli.service import EmbeddedService
from twinlens.db.migrate import upgrade
from twinlens.db.models import ModelVersion, TrainingRun
from twinlens.db.session import Database
from twinlens.generic import GenericPlugin
from twinlens.services import keys
from twinlens.settings import Settings

OUTSIDE = Path("/usr/share")  # exists on every machine, far from pytest's temporary folder


def _count(database: Database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def _escapes(tmp_path: Path, bundle: Path) -> dict[str, str]:
    """Ways out of the roots (pytest's temporary folder in the live service), each naming
    an existing folder so only confinement can refuse it."""
    link = tmp_path / "link-out"
    link.symlink_to(OUTSIDE, target_is_directory=True)
    return {
        "relative": os.path.relpath(bundle, Path.cwd()),
        "dot-dot": str(tmp_path / ".." / ".." / ".." / ".." / ".." / ".." / OUTSIDE.relative_to("/")),
        "symlink out of the root": str(link),
        "outside every root": str(OUTSIDE),
    }


def _refused(response: httpx.Response, field: str) -> dict:
    body = problem(response, 422)
    assert [error["field"] for error in body["errors"]] == [field], body
    text = response.text
    assert os.getcwd() not in text, "the server's working directory leaked"
    assert str(OUTSIDE) not in text, "where the path leads leaked"
    return body


@pytest.mark.parametrize("way", ["relative", "dot-dot", "symlink out of the root", "outside every root"])
def test_a_bundle_path_outside_the_model_roots_is_refused(live, generic_bundle, tmp_path, way):
    path = _escapes(tmp_path, generic_bundle)[way]
    before = _count(live.db, ModelVersion)
    with live.client() as client:
        _refused(client.post("/v1/models", json={"bundle_path": path, "activate": True}), "bundle_path")
    assert _count(live.db, ModelVersion) == before


@pytest.mark.parametrize("field", ["data_path", "output_dir"])
@pytest.mark.parametrize("way", ["relative", "dot-dot", "symlink out of the root", "outside every root"])
def test_training_paths_outside_their_roots_are_refused(live, tmp_path, field, way):
    data = GenericPlugin().make_sample_dataset(tmp_path / "data", n=12, seed=2)
    body = {"plugin": "generic", "data_path": str(data), "output_dir": str(tmp_path / "out"), "epochs": 1}
    body[field] = _escapes(tmp_path, data)[way]
    before = _count(live.db, TrainingRun)
    with live.client() as client:
        _refused(client.post("/v1/training-runs", json=body), field)
    assert _count(live.db, TrainingRun) == before


def test_a_symlink_that_stays_inside_the_root_is_followed(live, generic_bundle, tmp_path):
    _, tenant_admin = _tenant_admin(live)
    link = tmp_path / "current"
    link.symlink_to(generic_bundle, target_is_directory=True)
    with live.client(tenant_admin) as client:
        response = client.post("/v1/models", json={"bundle_path": str(link)})
    assert response.status_code == 201, response.text
    assert response.json()["bundle_path"] == str(generic_bundle.resolve()), "the resolved path is stored"


def _tenant_admin(live) -> tuple[str, str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    with live.client() as client:
        return name, client.post("/v1/keys", json={"tenant": name, "admin": True}).json()["key"]


def test_the_default_roots_are_folders_under_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_model_roots == [tmp_path / "models"]
    assert settings.resolved_data_roots == [tmp_path / "datasets"]
    assert settings.resolved_output_roots == [tmp_path / "models"]


@pytest.fixture(scope="module")
def default_roots_service(tmp_path_factory):
    """The embedded service as users get it: no roots configured."""
    data_dir = tmp_path_factory.mktemp("default-roots")
    settings = service_settings(data_dir, f"sqlite:///{data_dir / 'twinlens.db'}")
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        _, key = keys.create_key(session, "roots", admin=True)
    service = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
    try:
        yield service, key
    finally:
        service.close()


def test_with_default_roots_a_bundle_in_data_dir_models_registers_and_one_elsewhere_does_not(default_roots_service,
                                                                                           generic_bundle):
    service, key = default_roots_service
    inside = service.settings.data_dir / "models" / "generic"
    shutil.copytree(generic_bundle, inside)
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        _refused(client.post("/v1/models", json={"bundle_path": str(generic_bundle)}), "bundle_path")
        registered = client.post("/v1/models", json={"bundle_path": str(inside), "activate": True})
    assert registered.status_code == 201, registered.text
    assert registered.json()["bundle_path"] == str(inside.resolve())


def test_with_default_roots_training_reads_data_dir_datasets_and_writes_data_dir_models(default_roots_service, tmp_path):
    service, key = default_roots_service
    data_dir = service.settings.data_dir
    inside = GenericPlugin().make_sample_dataset(data_dir / "datasets" / "tickets", n=12, seed=4)
    elsewhere = GenericPlugin().make_sample_dataset(tmp_path / "tickets", n=12, seed=4)
    body = {"plugin": "generic", "output_dir": str(data_dir / "models" / "trained"), "fusion": "no-such-fusion"}
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        _refused(client.post("/v1/training-runs", json={**body, "data_path": str(elsewhere)}), "data_path")
        _refused(client.post("/v1/training-runs", json={**body, "data_path": str(inside),
                                                        "output_dir": str(data_dir / "elsewhere")}), "output_dir")
        # An unknown fusion fails on the worker before any training: accepted here is the point.
        accepted = client.post("/v1/training-runs", json={**body, "data_path": str(inside)})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["request"]["data_path"] == str(inside.resolve())
