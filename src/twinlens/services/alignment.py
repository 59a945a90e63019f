"""Training runs of kind "align": an aligned image-text space for one model version,
trained on the tenant's own (photo, text) pairs (engine/align.py), on the training queue.

A tenant admin asks (`POST /v1/plugins/{name}/alignments`): the data file and output
folder must lie inside the data and output roots, the model version must be the
tenant's or a global one it may use (by default the plugin's active model). The worker
embeds the pairs with that model, trains the two maps, writes the folder, and the run's
completion stores the maps in `alignment_spaces` for this tenant and model version (SQL
is the source of truth the API reads; the folder is the artifact). Text-to-image search
uses the space from then on; a new run replaces it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from twinlens.contract.errors import InputError
from twinlens.contract.json_values import json_safe
from twinlens.db.base import utcnow
from twinlens.db.embedding_tables import AlignmentSpace
from twinlens.db.models import ModelVersion, TrainingRun
from twinlens.db.repositories import AuditRepository, ModelRepository, TrainingRunRepository
from twinlens.db.repositories.embeddings import EmbeddingRepository
from twinlens.db.session import after_commit
from twinlens.queue import publish_training
from twinlens.services.admin_paths import confined_path
from twinlens.services.case_embeddings import forget_indexes
from twinlens.services.errors import NotFound
from twinlens.services.keys import Principal
from twinlens.services.models import model_for_new_job
from twinlens.services.search import pack_weights
from twinlens.settings import Settings

ALIGN = "align"


@dataclass(frozen=True)
class AlignRequest:
    plugin: str
    data_path: str
    output_dir: str
    model_id: uuid.UUID | None = None  # None: the plugin's active model for the tenant
    text_field: str | None = None  # None: the model's first text input
    dim: int = 64
    epochs: int = 200


def submit_align_run(session: Session, principal: Principal, request: AlignRequest, settings: Settings) -> TrainingRun:
    principal.require_admin()
    model = _model(session, principal, request)
    data = confined_path("data_path", request.data_path, settings.resolved_data_roots, setting="TWINLENS_DATA_ROOTS")
    if not data.is_file():
        raise InputError("data_path", f"{data} is not a file on the server")
    out = confined_path("output_dir", request.output_dir, settings.resolved_output_roots, setting="TWINLENS_OUTPUT_ROOTS")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "alignment.json").is_file())):
        raise InputError("output_dir", f"{out} holds files that are not an alignment; give a new or empty folder")
    resolved = {"kind": ALIGN, "data_path": str(data), "output_dir": str(out), "model_id": str(model.id),
                "text_field": request.text_field, "dim": request.dim, "epochs": request.epochs, "scope": "tenant"}
    run = TrainingRunRepository(session).add(TrainingRun(tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                                         plugin=model.plugin, status="queued", request=resolved))
    AuditRepository(session).record("alignment.submit", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"training_run:{run.id}", details={"plugin": model.plugin, "model_id": str(model.id)})
    run_id = run.id
    after_commit(session, lambda: publish_training(run_id))
    return run


def _model(session: Session, principal: Principal, request: AlignRequest) -> ModelVersion:
    if request.model_id is None:
        return model_for_new_job(session, principal.tenant_id, request.plugin)
    model = ModelRepository(session).get(request.model_id)
    if model is None or model.plugin != request.plugin or (model.tenant_id is not None and model.tenant_id != principal.tenant_id):
        raise NotFound(f"no model {request.model_id} of plugin {request.plugin}")
    return model


# -- the worker's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class AlignJob:
    """What the worker needs (from the claimed run's request)."""

    run_id: uuid.UUID
    attempt: int
    tenant_id: uuid.UUID
    model_id: uuid.UUID
    bundle_path: str
    version: str
    data_path: Path
    output_dir: Path
    text_field: str | None
    dim: int
    epochs: int


def align_job(session: Session, run_id: uuid.UUID, attempt: int, tenant_id: uuid.UUID | None, request: dict[str, Any]) -> AlignJob:
    if tenant_id is None:
        raise InputError("model_id", "an aligned space belongs to a tenant; submit the run with a tenant admin key")
    model = session.get(ModelVersion, uuid.UUID(request["model_id"]))
    if model is None:
        raise NotFound(f"model {request['model_id']} no longer exists")
    return AlignJob(run_id, attempt, tenant_id, model.id, model.bundle_path, model.version, Path(request["data_path"]),
                    Path(request["output_dir"]), request.get("text_field"), int(request.get("dim", 64)), int(request.get("epochs", 200)))


def complete_align_run(session: Session, job: AlignJob, arrays: dict[str, Any], config: dict[str, Any]) -> bool:
    """Store the space for the tenant and model version and mark the run succeeded, in
    one transaction; False when this attempt no longer holds the run."""
    metrics = json_safe(config.get("metrics", {}))
    repo = TrainingRunRepository(session)
    if not repo.finish(job.run_id, job.attempt, "succeeded", utcnow(), metrics=metrics, error=None):
        return False
    weights, layout = pack_weights({name: arrays[name] for name in ("image.weight", "image.bias", "text.weight", "text.bias")})
    EmbeddingRepository(session).put_alignment(AlignmentSpace(
        tenant_id=job.tenant_id, model_version_id=job.model_id, training_run_id=job.run_id, text_kind=config["text_kind"],
        dim=int(config["dim"]), weights=weights, layout=layout, metrics=metrics, path=str(job.output_dir)))
    repo.link_model(job.run_id, job.model_id)
    # An index over the old space's image side no longer matches; the sweep builds anew.
    forget_indexes(session, job.tenant_id, job.model_id)
    return True
