"""Model versions: register a bundle directory, activate it, find the one a job uses."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from twinlens.contract.bundle_files import read_bundle_config
from twinlens.contract.errors import BundleError, InputError, PluginError, UnknownPluginError
from twinlens.contract.registry import check_schema_matches, get_plugin
from twinlens.contract.schema import LabelSchema
from twinlens.db.base import utcnow
from twinlens.db.models import ModelVersion
from twinlens.db.learning_tables import ModelActivation
from twinlens.db.repositories import AuditRepository, ModelRepository
from twinlens.db.repositories.learning import LearningRepository, scope_key
from twinlens.services.admin_paths import confined_path
from twinlens.services import zero_shot_models
from twinlens.services.errors import Conflict, NotFound
from twinlens.services.keys import Principal

Scope = Literal["global", "tenant"]


@dataclass(frozen=True)
class ActivationStep:
    """Why a model became its scope's champion: a plain activation, a promotion through
    the gate (or forced past it) or a rollback."""

    action: Literal["activate", "promote", "rollback"] = "activate"
    reason: str | None = None
    forced: bool = False
    gate_report_id: uuid.UUID | None = None

    def audit_details(self, previous: ModelVersion | None) -> dict:
        details = {"previous_model_id": str(previous.id) if previous is not None else None}
        if self.action != "activate":
            details.update(reason=self.reason, forced=self.forced,
                           gate_report_id=str(self.gate_report_id) if self.gate_report_id else None)
        return details


def record_activation(session: Session, principal: Principal | None, model: ModelVersion, previous: ModelVersion | None,
                      step: ActivationStep) -> None:
    """The history row and the champion alias of the model's scope."""
    repo = LearningRepository(session)
    scope = scope_key(model.tenant_id)
    repo.add_activation(ModelActivation(
        scope=scope, tenant_id=model.tenant_id, plugin=model.plugin, action=step.action, model_version_id=model.id,
        previous_model_version_id=previous.id if previous is not None and previous.id != model.id else None,
        forced=step.forced, reason=step.reason, gate_report_id=step.gate_report_id,
        api_key_id=principal.key_id if principal else None))
    repo.set_alias(scope, model.plugin, "champion", model.id)
    challenger = repo.alias(scope, model.plugin, "challenger")
    if challenger is not None and challenger.model_version_id == model.id:
        repo.clear_alias(scope, model.plugin, "challenger")  # a champion does not shadow itself


def register_bundle(
    session: Session, principal: Principal | None, bundle_path: str, *, scope: Scope | None = None, activate: bool = False
) -> ModelVersion:
    """Validate a bundle directory (hashes, no pickle, plugin and heads match) and record it.

    `principal=None` is the operator (CLI, startup, a training worker finishing an accepted
    run), whose paths are trusted. A request's path goes through `register_requested_bundle`.
    """
    scope = registration_scope(principal, scope)
    return _register(session, principal, _bundle_dir(bundle_path), scope, activate)


def register_requested_bundle(
    session: Session, principal: Principal, bundle_path: str, roots: Sequence[Path], *, scope: Scope | None = None,
    activate: bool = False,
) -> ModelVersion:
    """POST /v1/models: as `register_bundle`, for a bundle inside the model roots only."""
    scope = registration_scope(principal, scope)
    path = confined_path("bundle_path", bundle_path, roots, setting="TWINLENS_MODEL_ROOTS")
    if not path.is_dir():
        raise InputError("bundle_path", f"{path} is not a directory on the server")
    return _register(session, principal, path, scope, activate)


def registration_scope(principal: Principal | None, requested: Scope | None) -> Scope:
    """Who will use a model registered (or trained) by this caller: a tenant admin's models
    are its tenant's, and only a platform admin (or the operator) makes global ones."""
    if principal is None:
        return requested or "global"
    principal.require_admin()
    if principal.is_platform_admin:
        return requested or "global"
    if requested == "global":
        principal.require_platform_admin("a global model (scope=global)")
    return "tenant"


def _register(session: Session, principal: Principal | None, path: Path, scope: Scope, activate: bool) -> ModelVersion:
    config = _read_config(path)
    tenant_id = principal.tenant_id if (principal is not None and scope == "tenant") else None
    repo = ModelRepository(session)
    existing = repo.with_hash(config["plugin"], tenant_id, config["content_hash"])
    if existing is not None:
        raise Conflict(f"this bundle is already registered as model {existing.id}", model_id=str(existing.id))
    model = repo.add(_model_from_config(config, path, tenant_id))
    _audit(session, principal, "model.register", model, {"bundle_path": str(path), "scope": scope})
    if activate:
        activate_model(session, principal, model.id)
    return model


def _bundle_dir(bundle_path: str) -> Path:
    try:
        path = Path(bundle_path).expanduser().resolve()
        is_dir = path.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL bytes, symlink loops
        raise InputError("bundle_path", f"not a usable path: {exc.__class__.__name__}") from exc
    if not is_dir:
        raise InputError("bundle_path", f"{path} is not a directory on the server")
    return path


def _read_config(path: Path) -> dict:
    try:
        config = read_bundle_config(path)
        plugin = get_plugin(config["plugin"])
        check_schema_matches(plugin, LabelSchema.model_validate(config["label_schema"]))
    except (BundleError, PluginError, UnknownPluginError) as exc:
        raise InputError("bundle_path", str(exc)) from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError("bundle_path", f"bundle config is incomplete or invalid: {exc}") from exc
    except OSError as exc:
        raise InputError("bundle_path", f"cannot read the bundle: {exc}") from exc
    return config


def _model_from_config(config: dict, path: Path, tenant_id: uuid.UUID | None) -> ModelVersion:
    return ModelVersion(
        tenant_id=tenant_id,
        plugin=config["plugin"],
        version=f"{config['plugin']}@{config['version']}",
        bundle_path=str(path),
        content_hash=config["content_hash"],
        label_schema=config["label_schema"],
        model_spec=config.get("model_spec", {}),
        metrics=config.get("metrics", {}),
        is_active=False,
    )


def activate_model(session: Session, principal: Principal | None, model_id: uuid.UUID, *,
                   step: ActivationStep | None = None) -> ModelVersion:
    """Make a version the one new jobs of its plugin (and scope) use. A tenant admin
    activates its own tenant's models; a global one (which it can see, so no 404) is 403.
    Every change is a step of the scope's activation history (services/learning_models.py
    promotes and rolls back through here with their own `step`)."""
    if principal is not None:
        principal.require_admin()
    model = _visible(session, principal, model_id)
    if principal is not None and model.tenant_id is None:
        principal.require_platform_admin("activating a global model")
    repo = ModelRepository(session)
    previous = repo.active_in_scope(model.plugin, model.tenant_id)
    repo.deactivate_scope(model.plugin, model.tenant_id)
    model.is_active = True
    model.activated_at = utcnow()
    session.flush()
    step = step or ActivationStep()
    _audit(session, principal, f"model.{step.action}", model, {"plugin": model.plugin, **step.audit_details(previous)})
    record_activation(session, principal, model, previous, step)
    return model


def get_model(session: Session, principal: Principal, model_id: uuid.UUID) -> ModelVersion:
    return _visible(session, principal, model_id)


def list_models(session: Session, principal: Principal, plugin: str | None = None) -> list[ModelVersion]:
    return ModelRepository(session).visible_to(principal.tenant_id, plugin)


def active_models(session: Session) -> list[ModelVersion]:
    """Every active version, of every plugin and scope: what workers keep loaded."""
    return ModelRepository(session).all_active()


def model_for_new_job(session: Session, tenant_id: uuid.UUID, plugin: str, *, zero_shot: bool = True) -> ModelVersion:
    """The active model (the tenant's, else the global one); before any, the plugin's
    zero-shot model when its labels have descriptions (services/zero_shot_models.py) and
    `zero_shot` (the setting) allows it."""
    model = ModelRepository(session).active(plugin, tenant_id)
    if model is None and zero_shot:
        model = zero_shot_models.zero_shot_model(session, plugin)
    if model is None:
        why = "and its labels have no descriptions to answer zero-shot" if zero_shot else "and zero-shot answers are off"
        raise Conflict(
            f"no active model for plugin {plugin!r}, {why}; an admin registers one with POST /v1/models",
            plugin=plugin,
        )
    return model


def _visible(session: Session, principal: Principal | None, model_id: uuid.UUID) -> ModelVersion:
    model = ModelRepository(session).get(model_id)
    hidden = model is None or (
        principal is not None and model.tenant_id is not None and not principal.may_act_on(model.tenant_id)
    )
    if hidden:
        raise NotFound(f"no model {model_id}")
    return model


def _audit(session: Session, principal: Principal | None, action: str, model: ModelVersion, details: dict) -> None:
    AuditRepository(session).record(
        action,
        tenant_id=principal.tenant_id if principal else None,
        api_key_id=principal.key_id if principal else None,
        target=f"model:{model.id}",
        details=details,
    )
