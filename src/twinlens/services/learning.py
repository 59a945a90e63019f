"""The learning loop's data side: exporting corrections, frozen holdouts, training runs
from base data + corrections, and evaluation runs that measure models on a holdout.

Both run kinds are training runs (the `training` queue, its worker, its sweeps): the run's
`request` says `kind` and holds its own fields; worker/learning.py does the engine work
and calls back here to record what it measured. Torch-free: the API imports this module.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from twinlens.blobs import BlobNotFound, BlobStore
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import RawInput
from twinlens.contract.registry import get_plugin
from twinlens.db.learning_tables import Holdout, ModelEvaluation
from twinlens.db.models import ModelVersion, TrainingRun
from twinlens.db.repositories import (
    AuditRepository,
    ModelRepository,
    TrainingRunRepository,
)
from twinlens.db.repositories.learning import LearningRepository
from twinlens.db.session import after_commit
from twinlens.queue import publish_training
from twinlens.services import models, training
from twinlens.services.admin_paths import confined_path
from twinlens.services.errors import Conflict, NotFound
from twinlens.services.keys import Principal
from twinlens.services.learning_export import (
    ExportSummary,
    corrections,
    export_corrections,
    reserved_for_holdout,
)
from twinlens.settings import Settings

CORRECTIONS = "corrections"
EVALUATION = "evaluation"


def parse_since(value: str | datetime | None, field: str = "since") -> datetime | None:
    """A date (YYYY-MM-DD, midnight UTC) or an ISO time with a zone; None for none."""
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if isinstance(value, datetime) else None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(field, "not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if moment.tzinfo is None:
        if len(value) > 10:
            raise InputError(field, "give a time zone, e.g. 2026-11-24T09:00:00Z")
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC time
        raise InputError(field, "out of range") from None


# -- corrections -> a data set ------------------------------------------------------------
def export_for_admin(session: Session, blobs: BlobStore, principal: Principal, plugin: str, output_dir: str,
                     settings: Settings, since: str | None = None) -> ExportSummary:
    """POST /v1/corrections/exports: the caller's tenant's corrections of `plugin` into a
    new folder inside the output roots. Held-out jobs stay out of it."""
    principal.require_admin()
    _known_plugin(plugin)
    target = confined_path("output_dir", output_dir, settings.resolved_output_roots, setting="TWINLENS_OUTPUT_ROOTS")
    summary = export_training_corrections(session, blobs, principal.tenant_id, plugin, target, settings,
                                          since=parse_since(since))
    AuditRepository(session).record("corrections.export", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"plugin:{plugin}", details={k: v for k, v in summary.as_dict().items() if k != "job_ids"})
    return summary


def export_training_corrections(session: Session, blobs: BlobStore, tenant_id: uuid.UUID, plugin: str, target: Path,
                                settings: Settings, since: datetime | None = None) -> ExportSummary:
    """The corrections a model may be trained on: every frozen holdout member and, while the
    holdout is made of corrections, the automatically reserved slice are left out."""
    excluded, fraction = training_exclusions(session, tenant_id, plugin, settings)
    return export_corrections(session, blobs, tenant_id=tenant_id, plugin_name=plugin, out_dir=target, since=since,
                              exclude=excluded, exclude_fraction=fraction)


def training_exclusions(session: Session, tenant_id: uuid.UUID, plugin: str, settings: Settings) -> tuple[set[uuid.UUID], float]:
    repo = LearningRepository(session)
    latest = repo.latest_holdout(tenant_id, plugin)
    fraction = settings.learning_holdout_fraction if latest is None or latest.kind == CORRECTIONS else 0.0
    return repo.held_out_job_ids(tenant_id, plugin), fraction


def _known_plugin(name: str) -> None:
    try:
        get_plugin(name)
    except Exception as exc:  # UnknownPluginError, PluginError
        raise InputError("plugin", str(exc)) from exc


# -- holdouts -------------------------------------------------------------------------------
def register_holdout(session: Session, principal: Principal, plugin: str, data_path: str, settings: Settings) -> Holdout:
    """A labelled data set the tenant gives (inside the data roots) as its next holdout version."""
    principal.require_admin()
    _known_plugin(plugin)
    path = confined_path("data_path", data_path, settings.resolved_data_roots, setting="TWINLENS_DATA_ROOTS")
    try:
        present = path.exists()
    except OSError:  # too long a name, permission denied on a parent
        present = False
    if not present:
        raise InputError("data_path", f"{path} does not exist on the server")
    holdout = LearningRepository(session).add_holdout(Holdout(
        tenant_id=principal.tenant_id, plugin=plugin, kind="registered", data_path=str(path), size=0, details={}))
    _audit_holdout(session, principal, holdout)
    return holdout


def freeze_corrections_holdout(session: Session, principal: Principal | None, tenant_id: uuid.UUID, plugin: str,
                               settings: Settings) -> Holdout:
    """A new holdout version: every corrected job in the reserved slice so far (and the
    members of earlier corrections versions, so a version only grows)."""
    if principal is not None:
        principal.require_admin()
    _known_plugin(plugin)
    repo = LearningRepository(session)
    fraction = settings.learning_holdout_fraction
    members = {item.job.id for item in corrections(session, tenant_id, plugin)
               if item.labels and not item.purged and reserved_for_holdout(item.job.id, fraction)}
    members |= repo.held_out_job_ids(tenant_id, plugin)
    if not members:
        raise Conflict(f"no corrected {plugin} job falls in the reserved holdout share ({fraction:.0%}) yet; "
                       "correct more jobs, or register a labelled holdout (data_path)", plugin=plugin)
    holdout = repo.add_holdout(Holdout(tenant_id=tenant_id, plugin=plugin, kind=CORRECTIONS, data_path=None,
                                       size=len(members), details={"fraction": fraction}), sorted(members))
    _audit_holdout(session, principal, holdout)
    return holdout


def ensure_holdout(session: Session, tenant_id: uuid.UUID, plugin: str, settings: Settings) -> Holdout | None:
    """The tenant's current holdout, frozen from its reserved corrections on first need."""
    latest = LearningRepository(session).latest_holdout(tenant_id, plugin)
    if latest is not None:
        return latest
    try:
        return freeze_corrections_holdout(session, None, tenant_id, plugin, settings)
    except Conflict:
        return None


def list_holdouts(session: Session, principal: Principal, plugin: str | None = None) -> list[Holdout]:
    principal.require_admin()
    return LearningRepository(session).holdouts(principal.tenant_id, plugin)


def _audit_holdout(session: Session, principal: Principal | None, holdout: Holdout) -> None:
    AuditRepository(session).record(
        "holdout.create", tenant_id=holdout.tenant_id, api_key_id=principal.key_id if principal else None,
        target=f"holdout:{holdout.id}", details={"plugin": holdout.plugin, "version": holdout.version, "kind": holdout.kind,
                                                 "size": holdout.size})


@dataclass(frozen=True)
class HoldoutExample:
    id: str
    raw: RawInput  # the job's stored inputs
    labels: dict[str, Any]


@dataclass(frozen=True)
class HoldoutData:
    """What a worker evaluates on: a data set path (registered) or the frozen jobs' inputs."""

    id: uuid.UUID
    version: int
    plugin: str
    data_path: Path | None
    examples: list[HoldoutExample]
    missing: int  # frozen jobs whose inputs were purged or erased since


def holdout_data(session: Session, blobs: BlobStore, holdout_id: uuid.UUID) -> HoldoutData:
    repo = LearningRepository(session)
    holdout = repo.holdout(holdout_id)
    if holdout is None:
        raise NotFound(f"no holdout {holdout_id}")
    if holdout.kind == "registered":
        return HoldoutData(holdout.id, holdout.version, holdout.plugin, Path(holdout.data_path), [], 0)
    frozen = set(repo.holdout_job_ids(holdout.id))
    found = [item for item in corrections(session, holdout.tenant_id, holdout.plugin) if item.job.id in frozen]
    examples = []
    for item in found:
        if item.purged:
            continue
        try:
            raw = item.raw_input(blobs)
        except BlobNotFound:
            continue
        examples.append(HoldoutExample(str(item.job.id), raw, item.labels))
    return HoldoutData(holdout.id, holdout.version, holdout.plugin, None, examples, holdout.size - len(examples))


# -- training from base data + corrections ----------------------------------------------------
@dataclass(frozen=True)
class LoopTrainingRequest:
    plugin: str
    data_path: str  # the base data set
    output_dir: str
    since: str | None = None  # corrections given since (default: all)
    combine: Literal["weighted", "deduplicated"] = "deduplicated"
    correction_weight: int = 2  # "weighted": each correction counts this many times
    spec_from: Literal["plugin", "champion"] = "plugin"
    shuffle_labels: bool = False  # a control: labels shuffled among the training rows (a model that must lose)
    evaluate: bool = True  # measure the candidate and the champion on the holdout afterwards
    base: training.TrainingRequest | None = None  # the other training options


def submit_corrections_run(session: Session, principal: Principal, request: LoopTrainingRequest, settings: Settings,
                           blobs: BlobStore | None = None) -> TrainingRun:
    """A training run of kind `corrections`: the worker exports the tenant's corrections (at
    run time, so the newest are in), joins them with the base data and trains."""
    principal.require_admin()
    parse_since(request.since)
    base = request.base or training.TrainingRequest(plugin=request.plugin, data_path=request.data_path,
                                                    output_dir=request.output_dir)
    if request.spec_from == "champion":
        champion = ModelRepository(session).active(request.plugin, principal.tenant_id)
        if champion is None:
            raise Conflict(f"no champion for {request.plugin} whose model spec to reuse", plugin=request.plugin)
        base = _with_spec(base, champion)
    holdout = ensure_holdout(session, principal.tenant_id, request.plugin, settings)
    run = training.submit_run(session, principal, base, settings)
    run.request = {**run.request, "kind": CORRECTIONS, "since": request.since, "combine": request.combine,
                   "correction_weight": request.correction_weight, "spec_from": request.spec_from,
                   "shuffle_labels": request.shuffle_labels, "evaluate": request.evaluate,
                   "holdout_id": str(holdout.id) if holdout is not None else None}
    session.flush()
    return run


def _with_spec(base: training.TrainingRequest, champion: ModelVersion) -> training.TrainingRequest:
    from dataclasses import replace

    spec = {**(champion.model_spec or {}), **(base.model_spec or {})}
    return replace(base, model_spec=spec)


def submit_evaluation(session: Session, principal: Principal, model_id: uuid.UUID, settings: Settings) -> TrainingRun:
    """POST /v1/models/{id}/evaluations: a run measuring the model and the champion of its
    scope on the tenant's current holdout (frozen from corrections if it has none yet)."""
    principal.require_admin()
    model = models.get_model(session, principal, model_id)
    holdout = ensure_holdout(session, principal.tenant_id, model.plugin, settings)
    if holdout is None:
        raise Conflict(f"no holdout for {model.plugin}: register one (POST /v1/holdouts) or correct more jobs",
                       plugin=model.plugin)
    champion = ModelRepository(session).active(model.plugin, principal.tenant_id)
    ids = [str(model.id)] + ([str(champion.id)] if champion is not None and champion.id != model.id else [])
    run = TrainingRunRepository(session).add(TrainingRun(
        tenant_id=principal.tenant_id, api_key_id=principal.key_id, plugin=model.plugin, status="queued",
        request={"kind": EVALUATION, "model_ids": ids, "holdout_id": str(holdout.id), "scope": "tenant"}))
    AuditRepository(session).record("model.evaluate", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"model:{model.id}", details={"holdout_id": str(holdout.id),
                                                                        "holdout_version": holdout.version})
    run_id = run.id
    after_commit(session, lambda: publish_training(run_id))
    return run


# -- the worker's side ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelToEvaluate:
    id: uuid.UUID
    version: str
    bundle_path: str


def models_to_evaluate(session: Session, claimed: training.ClaimedRun, candidate_id: uuid.UUID | None = None
                       ) -> list[ModelToEvaluate]:
    """The run's models (evaluation), or the new candidate and its champion (corrections)."""
    repo = ModelRepository(session)
    if claimed.kind == EVALUATION:
        ids = [uuid.UUID(value) for value in claimed.request.get("model_ids", [])]
    else:
        champion = repo.active(claimed.plugin, claimed.tenant_id) if claimed.tenant_id else repo.active(claimed.plugin, None)
        ids = [candidate_id] + ([champion.id] if champion is not None else [])
    found = [repo.get(model_id) for model_id in ids if model_id is not None]
    return [ModelToEvaluate(m.id, m.version, m.bundle_path) for m in found if m is not None]


def holdout_of(claimed: training.ClaimedRun) -> uuid.UUID | None:
    value = claimed.request.get("holdout_id")
    return uuid.UUID(value) if value else None


def record_evaluation(session: Session, model_id: uuid.UUID, holdout: HoldoutData, metrics: dict[str, Any]) -> ModelEvaluation:
    figures = {**metrics, "holdout_version": holdout.version, "holdout_missing": holdout.missing}
    return LearningRepository(session).save_evaluation(model_id, holdout.id, figures)


def finish_evaluation_run(session: Session, claimed: training.ClaimedRun, summary: dict[str, Any]) -> bool:
    from twinlens.db.base import utcnow

    return TrainingRunRepository(session).finish(claimed.id, claimed.attempt, "succeeded", utcnow(), metrics=summary, error=None)


def evaluations_of(session: Session, principal: Principal, model_id: uuid.UUID) -> list[ModelEvaluation]:
    model = models.get_model(session, principal, model_id)
    tenant_holdouts = {h.id: h for h in LearningRepository(session).holdouts(principal.tenant_id, model.plugin)}
    return [e for e in LearningRepository(session).evaluations_of(model.id) if e.holdout_id in tenant_holdouts]
