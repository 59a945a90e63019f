"""Every response shape of the API, and the functions that render database rows as them.

Their one home is here, in services, not in api/schemas.py: the worker's webhooks (a
service) send the very JobView that `GET /v1/jobs/{id}` answers (less the submitted
texts), and services may not import the api. So the dependency runs one way: the api
imports these views; api/schemas.py holds only what the API parses (request bodies).

Routes render the rows a service returns with the `*_view` functions below. A use case
whose answer is more than rows renders it itself and returns the view: a submitted job
(rendered before its commit), readiness checks, the plugin listing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twinlens.db.models import ApiKey, Feedback, Job, ModelVersion, Result, TrainingRun, WebhookDelivery

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
TrainingStatus = Literal["queued", "running", "succeeded", "failed"]


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ModelVersionRef(_View):
    id: uuid.UUID
    version: str = Field(description="Plugin and bundle content hash, e.g. support_ticket@3fa2c9d01b7e")


class ResultView(_View):
    model_version: ModelVersionRef
    heads: dict[str, Any] = Field(description="Per task: calibrated probabilities, top label(s), confidence")
    decision: dict[str, Any] = Field(description="The plugin's decision; always has needs_review")
    explanation: dict[str, Any] = Field(description="Per-modality contributions and plugin extras")
    created_at: datetime


class JobError(BaseModel):
    field: str | None = None
    reason: str


class JobView(_View):
    id: uuid.UUID
    plugin: str
    status: JobStatus
    model_version: ModelVersionRef
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    inputs: dict[str, Any] = Field(description="What was sent (image digest and type, texts) until purged")
    metadata: dict[str, Any]
    webhook_url: str | None
    result: ResultView | None


class JobList(BaseModel):
    data: list[JobView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end")


class ModelVersionView(_View):
    id: uuid.UUID
    plugin: str
    version: str
    scope: Literal["global", "tenant"]
    bundle_path: str
    content_hash: str
    is_active: bool
    label_schema: dict[str, Any]
    metrics: dict[str, Any]
    created_at: datetime
    activated_at: datetime | None


class FeedbackView(_View):
    id: uuid.UUID
    job_id: uuid.UUID
    labels: dict[str, Any]
    comment: str | None
    author: str | None
    created_at: datetime


class AttemptView(_View):
    number: int
    status_code: int | None
    error: str | None
    duration_ms: float
    attempted_at: datetime


class DeliveryView(_View):
    id: uuid.UUID
    event_type: str
    url: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempt_log: list[AttemptView]


class ApiKeyView(_View):
    id: uuid.UUID
    tenant: str
    prefix: str
    name: str
    is_admin: bool
    is_platform_admin: bool = Field(False, description="Acts on global models and every tenant; made only by the CLI")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class FeedbackList(BaseModel):
    data: list[FeedbackView]


class DeliveryList(BaseModel):
    data: list[DeliveryView]


class ModelList(BaseModel):
    data: list[ModelVersionView]


class CreatedKey(ApiKeyView):
    key: str = Field(description="The API key; shown once, stored only as a hash")


class KeyList(BaseModel):
    data: list[ApiKeyView]


class TenantView(BaseModel):
    id: uuid.UUID
    name: str
    webhook_secret: str | None = Field(
        description="Verifies this tenant's webhooks (Standard Webhooks, whsec_...); shown to admin keys only, null to others")
    previous_secret_valid_until: datetime | None = Field(
        None, description="Until then deliveries also carry a signature made with the secret before the last rotation")


class WebhookSecretRotation(BaseModel):
    webhook_secret: str = Field(description="The new signing secret (whsec_...); it signs every delivery from now on")
    previous_secret_valid_until: datetime | None = Field(
        description="Until then deliveries carry signatures of both the new and the previous secret; null: no overlap")


class PluginView(BaseModel):
    name: str
    version: str | None = None
    api_version: int | None = None
    description: str = ""
    intended_use: str = ""
    label_schema: dict[str, Any] | None = None
    input_schema: dict[str, Any] | None = None
    error: str | None = Field(None, description="Set when the installed plugin is broken")


class PluginList(BaseModel):
    data: list[PluginView]


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
    time: datetime | None = None


class TrainingRunError(BaseModel):
    field: str | None = None
    reason: str
    rows: list[dict[str, Any]] | None = Field(None, description="Bad data rows (line, field, reason), when the data was at fault")


class TrainingRunView(BaseModel):
    id: uuid.UUID
    plugin: str
    status: TrainingStatus
    request: dict[str, Any] = Field(description="What is trained: resolved paths, dataset options, model spec, training config")
    attempts: int
    error: TrainingRunError | None
    model_version: ModelVersionRef | None = Field(description="The registered (inactive) model, once the run succeeded")
    metrics: dict[str, Any] | None = Field(description="Validation metrics summary; the model version has the full report")
    created_by_key_id: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TrainingRunList(BaseModel):
    data: list[TrainingRunView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end")


def model_ref(model: ModelVersion) -> ModelVersionRef:
    return ModelVersionRef(id=model.id, version=model.version)


def result_view(result: Result) -> ResultView:
    return ResultView(
        model_version=ModelVersionRef(id=result.model_version_id, version=result.model_version),
        heads=result.heads,
        decision=result.decision,
        explanation=result.explanation,
        created_at=result.created_at,
    )


def job_view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        plugin=job.plugin,
        status=job.status,
        model_version=model_ref(job.model_version),
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=JobError(**job.error) if job.error else None,
        inputs=_inputs_view(job),
        metadata=job.meta or {},
        webhook_url=job.webhook_url,
        result=result_view(job.result) if job.result is not None else None,
    )


def _inputs_view(job: Job) -> dict[str, Any]:
    if job.inputs_purged_at is not None:
        return {"purged_at": job.inputs_purged_at.isoformat()}
    image = {"sha256": job.input_blob, "media_type": job.input_media_type} if job.input_blob else None
    return {"image": image, "texts": job.texts or {}}


def model_view(model: ModelVersion) -> ModelVersionView:
    return ModelVersionView(
        id=model.id,
        plugin=model.plugin,
        version=model.version,
        scope="global" if model.tenant_id is None else "tenant",
        bundle_path=model.bundle_path,
        content_hash=model.content_hash,
        is_active=model.is_active,
        label_schema=model.label_schema,
        metrics=model.metrics or {},
        created_at=model.created_at,
        activated_at=model.activated_at,
    )


def feedback_view(feedback: Feedback) -> FeedbackView:
    return FeedbackView.model_validate(feedback)


def delivery_view(delivery: WebhookDelivery) -> DeliveryView:
    return DeliveryView.model_validate(delivery)


def key_view(key: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.id,
        tenant=key.tenant.name,
        prefix=key.prefix,
        name=key.name,
        is_admin=key.is_admin,
        is_platform_admin=key.is_platform_admin,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def created_key_view(key: ApiKey, plain: str) -> CreatedKey:
    return CreatedKey(**key_view(key).model_dump(), key=plain)


def training_run_view(run: TrainingRun) -> TrainingRunView:
    model = run.model_version
    return TrainingRunView(
        id=run.id,
        plugin=run.plugin,
        status=run.status,
        request=run.request,
        attempts=run.attempts,
        error=TrainingRunError(**run.error) if run.error else None,
        model_version=model_ref(model) if model is not None else None,
        metrics=run.metrics,
        created_by_key_id=run.api_key_id,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )
