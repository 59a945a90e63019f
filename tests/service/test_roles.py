"""Who may do what, over real HTTP on PostgreSQL and SQLite: a tenant admin manages its own
tenant's keys, models and training and nothing of another tenant's (404, or 403 where the
thing is visible anyway); a platform admin, made only by the CLI, acts on global models and
every tenant."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from service_helpers import problem
from sqlalchemy import func, select

from twinlens.db.models import ApiKey, ModelVersion, Tenant, TrainingRun
from twinlens.generic import GenericPlugin
from twinlens.services import keys

TWINLENS = str(Path(sys.executable).with_name("twinlens"))


def _tenant(live, *, admin: bool = True) -> tuple[str, str]:
    """A new tenant's (name, key), made by the platform admin."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    with live.client() as client:
        response = client.post("/v1/keys", json={"tenant": name, "admin": admin})
    assert response.status_code == 201, response.text
    return name, response.json()["key"]


def _key_id(client: httpx.Client, plain: str) -> str:
    return next(k["id"] for k in client.get("/v1/keys").json()["data"] if k["prefix"] == plain[:11])


def _count(live, model, *where) -> int:
    with live.db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def _active_global(client: httpx.Client) -> dict:
    return next(m for m in client.get("/v1/models", params={"plugin": "generic"}).json()["data"]
                if m["scope"] == "global" and m["is_active"])


def test_a_tenant_admin_sees_and_revokes_only_its_own_tenants_keys(live):
    name_a, admin_a = _tenant(live)
    name_b, admin_b = _tenant(live)
    with live.client(admin_b) as client:
        key_b = _key_id(client, admin_b)
    with live.client(admin_a) as client:
        listed = client.get("/v1/keys").json()["data"]
        assert {k["tenant"] for k in listed} == {name_a}
        assert key_b not in {k["id"] for k in listed}
        problem(client.delete(f"/v1/keys/{key_b}"), 404)  # as if it did not exist
        problem(client.delete(f"/v1/keys/{uuid.uuid4()}"), 404)
        plain = client.post("/v1/keys", json={}).json()["key"]
        assert client.delete(f"/v1/keys/{_key_id(client, plain)}").status_code == 204
    with live.client(admin_b) as client:
        assert client.get("/v1/tenant").json()["name"] == name_b, "tenant B's key still works"
    with live.client(plain) as client:
        problem(client.get("/v1/jobs"), 401)


def test_a_tenant_admin_creates_keys_for_its_own_tenant_only(live):
    name_a, admin_a = _tenant(live)
    name_b, _ = _tenant(live)
    unknown = f"t-{uuid.uuid4().hex[:10]}"
    keys_before = _count(live, ApiKey)
    with live.client(admin_a) as client:
        own = client.post("/v1/keys", json={"admin": True, "name": "ci"})
        assert own.status_code == 201, own.text
        assert own.json()["tenant"] == name_a and own.json()["is_admin"] and not own.json()["is_platform_admin"]
        for other in (name_b, unknown):  # the same answer whether the tenant exists or not
            body = problem(client.post("/v1/keys", json={"tenant": other}), 403)
            assert other not in body["detail"]
        body = problem(client.post("/v1/keys", json={"tenant": name_a, "platform_admin": True}), 422)
    assert body["errors"][0]["field"].endswith("platform_admin")
    assert _count(live, ApiKey) == keys_before + 1, "only the own-tenant key was made"
    assert _count(live, Tenant, Tenant.name == unknown) == 0, "a refused request made no tenant"


def test_no_request_makes_a_platform_admin_key(live):
    name, _ = _tenant(live)
    with live.client() as platform:
        body = problem(platform.post("/v1/keys", json={"tenant": name, "admin": True, "platform_admin": True}), 422)
        assert body["errors"][0]["field"].endswith("platform_admin")
        made = platform.post("/v1/keys", json={"tenant": name, "admin": True}).json()
    assert made["is_admin"] and not made["is_platform_admin"], "an admin key made over HTTP is a tenant admin"
    with live.client(made["key"]) as client:
        problem(client.post(f"/v1/models/{_active_global(client)['id']}/activate"), 403)


def test_a_tenant_admin_registers_for_its_tenant_by_default_and_never_touches_global_models(live, second_generic_bundle):
    _, admin_a = _tenant(live)
    _, admin_b = _tenant(live)
    with live.client(admin_a) as client:
        active_global = _active_global(client)
        models_before = _count(live, ModelVersion)
        body = problem(client.post("/v1/models", json={"bundle_path": str(second_generic_bundle), "scope": "global"}), 403)
        assert "platform admin" in body["detail"]
        assert _count(live, ModelVersion) == models_before, "the refused request left a row"
        problem(client.post(f"/v1/models/{active_global['id']}/activate"), 403)  # visible, so 403 not 404
        own = client.post("/v1/models", json={"bundle_path": str(second_generic_bundle)})
        assert own.status_code == 201, own.text
        own = own.json()
        assert own["scope"] == "tenant", "a tenant admin's registration defaults to its tenant"
        assert _active_global(client)["id"] == active_global["id"]
    with live.client(admin_b) as client:
        problem(client.get(f"/v1/models/{own['id']}"), 404)
        problem(client.post(f"/v1/models/{own['id']}/activate"), 404)
        assert own["id"] not in {m["id"] for m in client.get("/v1/models").json()["data"]}


def test_a_platform_admin_acts_on_global_models_and_on_other_tenants(live, generic_bundle, second_generic_bundle):
    name_a, admin_a = _tenant(live)
    with live.client(admin_a) as client:
        tenant_model = client.post("/v1/models", json={"bundle_path": str(second_generic_bundle), "scope": "tenant"}).json()
        assert tenant_model["scope"] == "tenant"
        plain_a = client.post("/v1/keys", json={"tenant": name_a}).json()["key"]
    with live.client() as platform:
        active_global = _active_global(platform)
        # Its registration defaults to global: the global copy of this bundle is the conflict.
        conflict = problem(platform.post("/v1/models", json={"bundle_path": str(generic_bundle)}), 409)
        assert conflict["model_id"] == active_global["id"]
        assert platform.post(f"/v1/models/{active_global['id']}/activate").status_code == 200
        assert platform.get(f"/v1/models/{tenant_model['id']}").status_code == 200
        activated = platform.post(f"/v1/models/{tenant_model['id']}/activate")
        assert activated.status_code == 200 and activated.json()["is_active"], activated.text
        listed = platform.get("/v1/keys").json()["data"]
        assert name_a in {k["tenant"] for k in listed}
        assert platform.delete(f"/v1/keys/{_key_id(platform, plain_a)}").status_code == 204
    with live.client(plain_a) as client:
        problem(client.get("/v1/jobs"), 401)


def test_a_tenant_admin_cannot_revoke_its_tenants_platform_admin_key(live):
    name, admin = _tenant(live)
    with live.db.session() as session:  # what `twinlens keys create --platform-admin` does
        record, platform_plain = keys.create_key(session, name, platform_admin=True, name="ops")
        platform_id = str(record.id)
    with live.client(admin) as client:
        listed = {k["id"]: k for k in client.get("/v1/keys").json()["data"]}
        assert listed[platform_id]["is_platform_admin"] and listed[platform_id]["is_admin"]
        problem(client.delete(f"/v1/keys/{platform_id}"), 403)
    with live.client(platform_plain) as client:
        assert client.get("/v1/tenant").status_code == 200, "the platform key still works"


def test_a_tenant_admins_training_is_its_tenants_and_never_global(live, tmp_path):
    data = GenericPlugin().make_sample_dataset(tmp_path / "data", n=12, seed=5)
    _, admin = _tenant(live)
    runs_before = _count(live, TrainingRun)
    # A fusion only the worker knows to be unknown: the run fails fast, before training.
    body = {"plugin": "generic", "data_path": str(data), "output_dir": str(tmp_path / "out"), "fusion": "no-such-fusion"}
    with live.client(admin) as client:
        problem(client.post("/v1/training-runs", json={**body, "scope": "global"}), 403)
        assert _count(live, TrainingRun) == runs_before, "a refused request left a run"
        accepted = client.post("/v1/training-runs", json=body)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["request"]["scope"] == "tenant"


def test_the_cli_makes_a_platform_admin_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINLENS_")}
    env.update(TWINLENS_DATA_DIR=str(tmp_path), HF_HUB_OFFLINE="1")
    assert subprocess.run([TWINLENS, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    made = subprocess.run([TWINLENS, "keys", "create", "--tenant", "ops", "--platform-admin"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "platform admin key" in made.stderr
    from twinlens.db.session import Database
    from twinlens.settings import Settings

    database = Database(Settings(data_dir=tmp_path).resolved_database_url)
    try:
        with database.session() as session:
            principal = keys.authenticate(session, made.stdout.strip())
    finally:
        database.dispose()
    assert principal.is_platform_admin and principal.is_admin and principal.tenant_name == "ops"
