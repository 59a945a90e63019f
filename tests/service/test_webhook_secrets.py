"""Webhook signing secrets over real HTTP on PostgreSQL and SQLite: shown to admin keys only,
sealed at rest with Fernet, rotated with an overlap during which one delivery verifies with
either secret (the `standardwebhooks` library), and a delivery whose connection lands on a
non-public address (DNS rebinding) is refused before anything is sent."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from service_db import fresh_database
from service_helpers import problem
from sqlalchemy import text, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_webhooks import receiver

from twinlens.db.base import utcnow
from twinlens.db.migrate import upgrade
from twinlens.db.models import Tenant
from twinlens.db.session import Database
from twinlens.services import netguard
from twinlens.services.webhook_secrets import secret_box
from twinlens.settings import Settings

TWINLENS = str(Path(sys.executable).with_name("twinlens"))
PUBLIC_ADDRESS = "93.184.215.14"  # what a rebinding name answers at check time


def _tenant_keys(live) -> tuple[str, str]:
    """(admin key, standard key) of one new tenant."""
    admin = live.new_tenant_key(admin=True)
    with live.client(admin) as client:
        tenant = client.get("/v1/tenant").json()["name"]
        standard = client.post("/v1/keys", json={"tenant": tenant}).json()["key"]
    return admin, standard


def _delivered(client, hook, text_: str) -> tuple[dict[str, str], bytes]:
    before = len(hook.requests)
    hook.got.clear()
    client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": text_}, "webhook_url": hook.url})
    assert hook.got.wait(30), "no delivery"
    return hook.requests[before]


def _verifies(secret: str, delivery: tuple[dict[str, str], bytes]) -> bool:
    headers, body = delivery
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_only_admin_keys_see_the_signing_secret(live):
    admin, standard = _tenant_keys(live)
    with live.client(admin) as client:
        as_admin = client.get("/v1/tenant").json()
    with live.client(standard) as client:
        as_standard = client.get("/v1/tenant").json()
    assert as_admin["webhook_secret"].startswith("whsec_")
    assert as_standard["webhook_secret"] is None
    assert (as_standard["id"], as_standard["name"]) == (as_admin["id"], as_admin["name"])


def test_the_secret_is_sealed_at_rest(live):
    admin = live.new_tenant_key(admin=True)
    with live.client(admin) as client:
        shown = client.get("/v1/tenant").json()
    with live.db.engine.connect() as connection:
        (row,) = connection.execute(text("SELECT * FROM tenants WHERE name = :name"), {"name": shown["name"]}).mappings()
    assert not any(shown["webhook_secret"] in str(value) for value in row.values()), "the secret is stored in clear"
    assert row["legacy_webhook_secret"] is None
    key = (live.settings.data_dir / "secrets.key").read_text().strip()  # the development key, made on first use
    assert Fernet(key.encode()).decrypt(row["webhook_secret_sealed"].encode()).decode() == shown["webhook_secret"]


def test_rotation_signs_with_both_secrets_through_the_overlap_and_with_the_new_one_after(live):
    admin, standard = _tenant_keys(live)
    with live.client(admin) as client, receiver([204]) as hook:
        old = client.get("/v1/tenant").json()["webhook_secret"]
        started = utcnow()
        rotated = client.post("/v1/tenant/webhook-secret/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["webhook_secret"]
        assert new.startswith("whsec_") and new != old
        shown = client.get("/v1/tenant").json()
        assert shown["webhook_secret"] == new
        during = _delivered(client, hook, "in the overlap")

        # The default overlap (24 hours) ends: moved into the past rather than waited for.
        with live.db.session() as session:
            tenant_id = uuid.UUID(shown["id"])
            session.execute(update(Tenant).where(Tenant.id == tenant_id)
                            .values(previous_webhook_secret_expires_at=utcnow() - timedelta(seconds=1)))
        after = _delivered(client, hook, "after the overlap")
        after_shown = client.get("/v1/tenant").json()

    valid_until = rotated.json()["previous_secret_valid_until"]
    overlap = datetime.fromisoformat(valid_until) - started
    assert timedelta(hours=24) - timedelta(minutes=1) < overlap <= timedelta(hours=24) + timedelta(minutes=1)
    assert shown["previous_secret_valid_until"] == valid_until
    assert len(during[0]["webhook-signature"].split(" ")) == 2, "both signatures in the one header"
    assert _verifies(old, during) and _verifies(new, during)
    assert _verifies(new, after) and not _verifies(old, after)
    assert len(after[0]["webhook-signature"].split(" ")) == 1
    assert after_shown["previous_secret_valid_until"] is None


def test_a_rotation_without_overlap_retires_the_old_secret_at_once(live):
    admin = live.new_tenant_key(admin=True)
    with live.client(admin) as client, receiver([204]) as hook:
        old = client.get("/v1/tenant").json()["webhook_secret"]
        rotated = client.post("/v1/tenant/webhook-secret/rotate", json={"overlap_seconds": 0}).json()
        delivery = _delivered(client, hook, "no overlap")
    assert rotated["previous_secret_valid_until"] is None
    assert _verifies(rotated["webhook_secret"], delivery) and not _verifies(old, delivery)


def test_only_an_admin_rotates_and_a_bad_overlap_names_its_field(live):
    admin, standard = _tenant_keys(live)
    with live.client(admin) as client:
        before = client.get("/v1/tenant").json()["webhook_secret"]
        body = problem(client.post("/v1/tenant/webhook-secret/rotate", json={"overlap_seconds": -1}), 422)
        assert body["errors"][0]["field"].endswith("overlap_seconds")
    with live.client(standard) as client:
        problem(client.post("/v1/tenant/webhook-secret/rotate"), 403)
    with live.client(admin) as client:
        assert client.get("/v1/tenant").json()["webhook_secret"] == before, "refused rotations changed nothing"


def test_a_connection_that_lands_on_loopback_after_a_public_answer_is_refused(live, monkeypatch):
    """The name answers a public address when checked, while the connection itself reaches
    127.0.0.1 (`localhost` resolved for real): the rebinding a check of the URL alone misses."""
    monkeypatch.setattr(netguard, "resolve", lambda host, port, field: [PUBLIC_ADDRESS])
    monkeypatch.setattr(live.settings, "allow_private_webhooks", False)
    with live.client(live.new_tenant_key()) as client, receiver([204]) as hook:
        url = hook.url.replace("127.0.0.1", "localhost")
        job = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "rebound"}, "webhook_url": url})
        assert job.status_code == 202, job.text
        delivery = _delivery(client, job.json()["id"], "failed")
        refused_requests = list(hook.requests)
        monkeypatch.setattr(live.settings, "allow_private_webhooks", True)  # an intranet deployment's choice
        allowed = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "intranet"}, "webhook_url": url})
        assert hook.got.wait(30), "with private webhooks allowed the delivery goes out"
        assert _delivery(client, allowed.json()["id"], "succeeded")["attempts"] == 1
    assert refused_requests == [], "nothing reached the loopback receiver"
    assert delivery["attempts"] == 1, "refused for good, not retried"
    assert "non-public address 127.0.0.1" in delivery["attempt_log"][0]["error"] or \
        "non-public address ::1" in delivery["attempt_log"][0]["error"]


def _delivery(client, job_id: str, status: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"/v1/jobs/{job_id}/deliveries").json()["data"]
        if data and data[0]["status"] == status:
            return data[0]
        time.sleep(0.1)
    raise AssertionError(f"the delivery did not reach {status}: {data}")


# -- the secrets key ----------------------------------------------------------------------------


def test_production_refuses_to_start_without_a_secrets_key(tmp_path):
    with pytest.raises(ValueError, match="TWINLENS_SECRETS_KEY is required"):
        Settings(env="production")
    with pytest.raises(ValueError, match="not a Fernet key"):
        Settings(secrets_key="not-a-key")
    assert Settings(env="production", secrets_key=Fernet.generate_key().decode()).env == "production"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINLENS_")}
    env.update(TWINLENS_DATA_DIR=str(tmp_path), TWINLENS_ENV="production")
    serve = subprocess.run([TWINLENS, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert serve.returncode != 0 and "TWINLENS_SECRETS_KEY" in serve.stderr
    assert not (tmp_path / "secrets.key").exists(), "production never generates a key"


def test_the_development_key_is_made_once_in_data_dir_and_shared(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    with ThreadPoolExecutor(8) as pool:  # an API and workers starting together
        boxes = list(pool.map(lambda _: secret_box(settings), range(8)))
    key_file = tmp_path / "data" / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = boxes[0].seal("whsec_example")
    assert {box.open(token) for box in boxes} == {"whsec_example"}
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secrets.key"], "no file left aside"


def test_a_replaced_secrets_key_still_opens_what_the_old_one_sealed(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = secret_box(Settings(data_dir=tmp_path, secrets_key=old)).seal("whsec_kept")
    both = secret_box(Settings(data_dir=tmp_path, secrets_key=f"{new},{old}"))
    assert both.open(token) == "whsec_kept"
    resealed = both.seal("whsec_kept")
    assert secret_box(Settings(data_dir=tmp_path, secrets_key=new)).open(resealed) == "whsec_kept"


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_clear_secrets_from_before_0003_are_sealed_by_db_upgrade(tmp_path, backend):
    if backend == "postgresql":
        with fresh_database() as url:
            _check_legacy_sealing(tmp_path, url)
    else:
        _check_legacy_sealing(tmp_path, f"sqlite:///{tmp_path / 'twinlens.db'}")


def _check_legacy_sealing(tmp_path: Path, url: str) -> None:
    database = Database(url)
    try:
        upgrade(database.engine, "0002")
        tenant_id = uuid.uuid4()
        with database.engine.begin() as connection:
            connection.execute(text("INSERT INTO tenants (id, name, webhook_secret, created_at) "
                                    "VALUES (:id, 'old', :secret, CURRENT_TIMESTAMP)"),
                               {"id": tenant_id.hex if url.startswith("sqlite") else tenant_id, "secret": "whsec_legacy"})
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWINLENS_")}
        env.update(TWINLENS_DATA_DIR=str(tmp_path), TWINLENS_DATABASE_URL=url)
        result = subprocess.run([TWINLENS, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        with database.session() as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant.legacy_webhook_secret is None
            assert secret_box(Settings(data_dir=tmp_path)).open(tenant.webhook_secret_sealed) == "whsec_legacy"
    finally:
        database.dispose()
