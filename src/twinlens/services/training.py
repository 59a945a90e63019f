"""Training runs: an admin asks for a model to be trained on data the server can read; a
worker on the `training` queue trains it and registers the bundle (inactive: activating
it stays an admin's decision).

Submission checks everything that can be checked without the engine (plugin, paths,
model spec and training config), stores the run with everything resolved, and publishes
its id after commit. The worker's side (claim, complete, fail) are conditional updates,
idempotent by run id and attempt, like the jobs' in execution.py. Torch-free: the API
imports this module; the worker does the training itself.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy.orm import Session

from twinlens.contract.bundle_files import CONFIG_NAME, FORMAT
from twinlens.contract.errors import DatasetError, InputError, PluginError, TwinLensError, UnknownPluginError
from twinlens.contract.plugin import DatasetOptions, Plugin
from twinlens.contract.registry import get_plugin
from twinlens.contract.spec import ModelSpec, TrainConfig
from twinlens.db.base import utcnow
from twinlens.db.models import TrainingRun
from twinlens.db.repositories import AuditRepository, ModelRepository, TenantRepository, TrainingRunRepository
from twinlens.db.session import after_commit
from twinlens.queue import publish_training
from twinlens.services import models, training_options
from twinlens.services.admin_paths import confined_path
from twinlens.services.errors import Conflict, NotFound, ServiceError
from twinlens.contract.json_values import json_safe
from twinlens.services.keys import Principal
from twinlens.services.paging import PageRequest, next_cursor
from twinlens.services.training_options import ModelChoices, TrainingChoices, describe_validation
from twinlens.settings import Settings

Scope = Literal["global", "tenant"]
MAX_ERROR_ROWS = 50


@dataclass(frozen=True)
class TrainingRequest:
    """What an admin asks for; None means the plugin's default."""

    plugin: str
    data_path: str
    output_dir: str
    scope: Scope | None = None  # the caller's default: its tenant's for a tenant admin, global for a platform admin
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    fusion: str | None = None
    modalities: list[str] | None = None
    image_encoder: str | None = None
    text_encoder: str | None = None
    # ModelSpec / TrainConfig fields (partial or full), merged over the plugin's defaults;
    # the named options above win over them.
    model_spec: dict[str, Any] | None = None
    train_config: dict[str, Any] | None = None
    # DatasetOptions fields actually given (unset ones keep the reader's defaults).
    dataset: dict[str, Any] = field(default_factory=dict)
    preset: str = "auto"  # the automatic recipe, or "network" (one network as configured)
    time_limit_seconds: float = 300.0


# -- submission (API side) ----------------------------------------------------------------


def submit_run(session: Session, principal: Principal, request: TrainingRequest, settings: Settings) -> TrainingRun:
    """Validate and store a queued run; its id is published once the caller commits. Its
    paths must lie inside the data and output roots of `settings`."""
    principal.require_admin()
    scope = models.registration_scope(principal, request.scope)
    plugin = _plugin(request.plugin)
    resolved = {
        "data_path": str(_data_path(request.data_path, settings.resolved_data_roots)),
        "output_dir": str(_output_dir(session, request.output_dir, settings.resolved_output_roots)),
        "scope": scope,
        "dataset": _dataset_options(request.dataset),
        "model_spec": resolve_model_spec(plugin, request).model_dump(mode="json"),
        "train_config": resolve_train_config(plugin, request).model_dump(mode="json"),
        "overrides": _given_overrides(request),
        "preset": request.preset,
        "time_limit_seconds": request.time_limit_seconds,
    }
    run = TrainingRunRepository(session).add(TrainingRun(
        tenant_id=principal.tenant_id, api_key_id=principal.key_id, plugin=plugin.name, status="queued", request=resolved,
    ))
    AuditRepository(session).record("training.submit", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"training_run:{run.id}", details={"plugin": plugin.name, **resolved["overrides"]})
    run_id = run.id
    after_commit(session, lambda: publish_training(run_id))
    return run


def _plugin(name: str) -> Plugin:
    try:
        return get_plugin(name)
    except (UnknownPluginError, PluginError) as exc:
        raise InputError("plugin", str(exc)) from exc


def _data_path(raw: str, roots: Sequence[Path]) -> Path:
    # Absolute (a relative path would mean something different in each process) and inside the data roots.
    path = confined_path("data_path", raw, roots, setting="TWINLENS_DATA_ROOTS")
    if not _exists(path):
        raise InputError("data_path", f"{path} does not exist on the server")
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # too long a name, permission denied on a parent
        return False


def _output_dir(session: Session, raw: str, roots: Sequence[Path]) -> Path:
    """A new or empty folder, or an earlier bundle, inside the output roots: the engine
    replaces the folder wholesale, so anything else in it would be lost."""
    path = confined_path("output_dir", raw, roots, setting="TWINLENS_OUTPUT_ROOTS")
    if _exists(path):
        _check_replaceable(path)
    else:
        _check_creatable(path)
    registered = ModelRepository(session).with_bundle_path(str(path))
    if registered:
        raise Conflict(f"{path} is the bundle of registered model {registered[0].id}; training would replace its files",
                       model_id=str(registered[0].id))
    busy = [run for run in TrainingRunRepository(session).open_runs() if run.request.get("output_dir") == str(path)]
    if busy:
        raise Conflict(f"training run {busy[0].id} is already writing to {path}", training_run_id=str(busy[0].id))
    return path


def _check_replaceable(path: Path) -> None:
    if not path.is_dir():
        raise InputError("output_dir", f"{path} is a file")
    if any(path.iterdir()) and not _is_bundle(path):
        raise InputError("output_dir", f"{path} holds files that are not a model bundle; training replaces the folder "
                                       "wholesale, so give a new or empty folder or an earlier bundle")


def _is_bundle(path: Path) -> bool:
    try:
        marker = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == FORMAT


def _check_creatable(path: Path) -> None:
    ancestor = path.parent
    while not _exists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        # The ancestor may lie above the output roots (one not made yet): not named.
        raise InputError("output_dir", f"cannot create {path}: its nearest existing parent is not a writable folder")


def _dataset_options(given: dict[str, Any]) -> dict[str, Any]:
    try:
        options = DatasetOptions.model_validate(given)
    except ValidationError as exc:
        raise InputError("dataset", describe_validation(exc)) from None
    return options.model_dump(mode="json", exclude_unset=True)


def resolve_model_spec(plugin: Plugin, request: TrainingRequest) -> ModelSpec:
    choices = ModelChoices(fusion=request.fusion, image_encoder=request.image_encoder,
                           text_encoder=request.text_encoder, modalities=request.modalities)
    return training_options.resolve_model_spec(plugin.default_model_spec(), request.model_spec, choices)


def resolve_train_config(plugin: Plugin, request: TrainingRequest) -> TrainConfig:
    # Progress bars would only fill a worker's log.
    choices = TrainingChoices(epochs=request.epochs, batch_size=request.batch_size, seed=request.seed, progress=False)
    return training_options.resolve_train_config(plugin.training_defaults(), request.train_config, choices)


def _given_overrides(request: TrainingRequest) -> dict[str, Any]:
    names = ("epochs", "batch_size", "seed", "fusion", "modalities", "image_encoder", "text_encoder", "model_spec", "train_config")
    return {name: getattr(request, name) for name in names if getattr(request, name) is not None}


# -- reading (API side) -------------------------------------------------------------------


def get_run(session: Session, principal: Principal, run_id: uuid.UUID) -> TrainingRun:
    principal.require_admin()
    run = TrainingRunRepository(session).get_for_tenant(run_id, principal.tenant_id)
    if run is None:  # another tenant's run is indistinguishable from no run
        raise NotFound(f"no training run {run_id}")
    return run


def list_runs(
    session: Session, principal: Principal, page: PageRequest, *, plugin: str | None = None, status: str | None = None,
) -> tuple[list[TrainingRun], str | None]:
    """One page of the tenant's training runs, newest first, and the cursor of the next page."""
    principal.require_admin()
    repo = TrainingRunRepository(session)
    result = repo.page(principal.tenant_id, limit=page.limit, plugin=plugin, status=status, after=page.after)
    return result.rows, next_cursor(result)


# -- the worker's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedRun:
    """What a worker needs to train, detached from the session."""

    id: uuid.UUID
    plugin: str
    attempt: int
    data_path: Path
    output_dir: Path
    scope: Scope
    dataset: dict[str, Any]
    model_spec: dict[str, Any]
    train_config: dict[str, Any]
    preset: str = "network"  # runs queued before presets existed trained one network
    time_limit_seconds: float = 300.0
    # "standard", or a learning-loop kind ("corrections", "evaluation": services/learning.py)
    # whose own fields stay in `request`.
    kind: str = "standard"
    request: dict[str, Any] = field(default_factory=dict)
    tenant_id: uuid.UUID | None = None


def claim_run(session: Session, run_id: uuid.UUID) -> ClaimedRun | None:
    """queued -> running; None when the run is not queued (taken, finished or unknown)."""
    repo = TrainingRunRepository(session)
    attempt = repo.claim(run_id, utcnow())
    if attempt is None:
        return None
    run = session.get(TrainingRun, run_id, populate_existing=True)
    request = run.request
    return ClaimedRun(
        id=run.id, plugin=run.plugin, attempt=attempt, data_path=Path(request.get("data_path") or "."),
        output_dir=Path(request.get("output_dir") or "."), scope=request.get("scope", "global"),
        dataset=dict(request.get("dataset", {})), model_spec=dict(request.get("model_spec") or {}),
        train_config=dict(request.get("train_config") or {}),
        preset=request.get("preset", "network"), time_limit_seconds=float(request.get("time_limit_seconds", 300.0)),
        kind=request.get("kind", "standard"), request=dict(request), tenant_id=run.tenant_id,
    )


@dataclass(frozen=True)
class TrainingOutcome:
    """What training produced, as plain data (the engine's TrainResult stays in the worker)."""

    bundle_dir: Path
    metrics: dict[str, Any]
    epochs_run: int
    # Rows read from data_path (the engine holds a share out for validation) and rows left
    # out as bad under dataset.skip_bad_rows.
    data_rows: int
    skipped_rows: int = 0


def complete_run(session: Session, claimed: ClaimedRun, outcome: TrainingOutcome) -> TrainingRun | None:
    """Register the bundle (inactive) and mark the run succeeded, in the caller's one
    transaction: if registering fails, nothing of it is kept. None (and nothing written)
    when this attempt no longer holds the run."""
    repo = TrainingRunRepository(session)
    summary = metrics_summary(outcome)
    if not repo.finish(claimed.id, claimed.attempt, "succeeded", utcnow(), metrics=summary, error=None):
        return None
    model = models.register_bundle(session, _submitter(session, claimed.id), str(outcome.bundle_dir), scope=claimed.scope)
    repo.link_model(claimed.id, model.id)
    return session.get(TrainingRun, claimed.id, populate_existing=True)


def fail_run(session: Session, claimed: ClaimedRun, error: dict[str, Any]) -> bool:
    return TrainingRunRepository(session).finish(claimed.id, claimed.attempt, "failed", utcnow(), error=error)


def _submitter(session: Session, run_id: uuid.UUID) -> Principal | None:
    """The admin who asked, as the registering principal (for scope and the audit log);
    None (the operator) for runs no API key submitted."""
    run = session.get(TrainingRun, run_id)
    tenant = TenantRepository(session).get(run.tenant_id) if run.tenant_id else None
    if tenant is None:
        return None
    key = TenantRepository(session).key(run.api_key_id) if run.api_key_id else None
    return Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=run.api_key_id, is_admin=True,
                     is_platform_admin=bool(key and key.is_platform_admin))


def metrics_summary(outcome: TrainingOutcome) -> dict[str, Any]:
    """Scalar validation metrics per head and their means; per-class tables stay in the
    bundle's config (and the registered model's metrics)."""
    report = outcome.metrics
    heads = {
        name: {key: value for key, value in head.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
        for name, head in (report.get("heads") or {}).items()
    }
    summary = {
        "validation": {"n": report.get("n"), "mean": report.get("mean", {}), "heads": heads},
        "bundle_version": report.get("version"),
        "epochs_run": outcome.epochs_run,
        "shipped": report.get("shipped"),
        "shipped_reason": report.get("shipped_reason"),
        "candidates": {name: {"score": c.get("score"), "mean": c.get("report", {}).get("mean", {})}
                       for name, c in (report.get("candidates") or {}).items()},
        "data_rows": outcome.data_rows,
        "skipped_rows": outcome.skipped_rows,
    }
    return json_safe(summary)  # a JSON column: PostgreSQL refuses NaN


def describe_failure(exc: BaseException) -> dict[str, Any]:
    """A failed run's error, naming the field at fault when there is one."""
    if isinstance(exc, DatasetError):
        rows = [{"line": row.line, "field": row.field, "reason": row.reason} for row in exc.rows[:MAX_ERROR_ROWS]]
        return {"field": "data_path", "reason": f"{exc.path}: {len(exc.rows)} bad row(s)", "rows": rows}
    if isinstance(exc, InputError):
        return {"field": exc.field, "reason": exc.reason}
    if isinstance(exc, ServiceError):
        return {"field": None, "reason": exc.detail}
    if isinstance(exc, (TwinLensError, FileNotFoundError)):
        return {"field": None, "reason": str(exc)}
    return {"field": None, "reason": f"training failed: {type(exc).__name__}: {exc}"}


# -- recovery (the sweeper) -------------------------------------------------------------------


def fail_lost_runs(session: Session, settings: Settings) -> int:
    """A run `running` for longer than the training limit (plus grace) lost its worker.
    It is failed, not retried: a second attempt could race a still-living first one for
    the output folder."""
    cutoff = utcnow() - timedelta(seconds=settings.training_time_limit_seconds + settings.training_stale_grace_seconds)
    repo = TrainingRunRepository(session)
    reason = {"field": None, "reason": "no result within the training time limit: the worker running it stopped; "
                                       "submit the run again"}
    return sum(repo.finish(run_id, None, "failed", utcnow(), error=reason) for run_id in repo.running_ids_since_before(cutoff))


def queued_runs(session: Session, older_than: float = 0.0) -> list[uuid.UUID]:
    return TrainingRunRepository(session).queued_ids(created_before=utcnow() - timedelta(seconds=older_than))
