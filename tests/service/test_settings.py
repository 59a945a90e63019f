"""Settings: the TWINLENS_ prefix, derived paths, production refusing unsafe defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptography.fernet import Fernet

from twinlens.settings import DEMO_ADMIN_KEY, Settings

SECRETS_KEY = Fernet.generate_key().decode()  # production requires one (test_webhook_secrets.py)


def test_embedded_defaults_live_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TWINLENS_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'twinlens.db').resolve()}"
    assert settings.resolved_blob_dir == tmp_path / "blobs"
    assert settings.embedded_worker
    assert not settings.allow_private_urls and not settings.allow_private_webhooks


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("TWINLENS_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("TWINLENS_MAX_IMAGE_PIXELS", "1234")
    monkeypatch.setenv("TWINLENS_MODEL_BUNDLE_DIRS", '["/models/a", "/models/b"]')
    settings = Settings()
    assert not settings.embedded_worker
    assert settings.max_image_pixels == 1234
    assert settings.model_bundle_dirs == [Path("/models/a"), Path("/models/b")]


@pytest.mark.parametrize("key", [DEMO_ADMIN_KEY, "short-key"])
def test_production_refuses_unsafe_admin_keys(key):
    with pytest.raises(ValueError, match="BOOTSTRAP_ADMIN_KEY"):
        Settings(env="production", bootstrap_admin_key=key)
    assert Settings(env="development", bootstrap_admin_key=key).bootstrap_admin_key.get_secret_value() == key


def test_production_accepts_a_strong_key():
    settings = Settings(env="production", bootstrap_admin_key="tl_" + "k" * 40, secrets_key=SECRETS_KEY)
    assert settings.env == "production"


def test_startup_registers_bundles_and_the_bootstrap_key(tmp_path, generic_bundle):
    from fastapi.testclient import TestClient

    from twinlens.api.app import create_app
    from twinlens.db.migrate import upgrade
    from twinlens.db.session import Database

    key = "tl_" + "b" * 40
    settings = Settings(data_dir=tmp_path, bootstrap_admin_key=key, model_bundle_dirs=[generic_bundle], env="production",
                        secrets_key=SECRETS_KEY)
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    for _ in range(2):  # a restart finds both already there
        with TestClient(create_app(settings, db=database)) as client:
            models = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert models.status_code == 200, models.text
            (model,) = models.json()["data"]
            assert model["is_active"] and model["plugin"] == "generic" and model["scope"] == "global"
            assert client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["is_admin"]
