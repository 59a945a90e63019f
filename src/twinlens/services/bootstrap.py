"""Startup chores from settings: a bootstrap admin key, bundles to register."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from twinlens.contract.bundle_files import read_bundle_config
from twinlens.db.repositories import ModelRepository
from twinlens.services import keys, models
from twinlens.settings import Settings

log = logging.getLogger(__name__)


def bootstrap(session: Session, settings: Settings) -> None:
    if settings.bootstrap_admin_key is not None:
        # The operator sets it, like a CLI-made key: a platform admin (global models, every tenant).
        keys.ensure_key(session, settings.bootstrap_tenant, settings.bootstrap_admin_key.get_secret_value(), admin=True,
                        platform_admin=True)
    for bundle_dir in settings.model_bundle_dirs:
        ensure_global_model(session, str(bundle_dir))


def ensure_global_model(session: Session, bundle_dir: str) -> None:
    """Register a bundle as a global model if it is new; activate it if its plugin has none."""
    config = read_bundle_config(bundle_dir)
    repo = ModelRepository(session)
    model = repo.with_hash(config["plugin"], None, config["content_hash"])
    if model is None:
        model = models.register_bundle(session, None, bundle_dir, scope="global")
        log.info("registered model %s from %s", model.version, bundle_dir)
    if repo.active(model.plugin, None) is None:
        models.activate_model(session, None, model.id)
