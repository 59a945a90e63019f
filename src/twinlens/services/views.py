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
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from twinlens.db.batch_tables import Batch
from twinlens.db.models import ApiKey, Feedback, Job, ModelVersion, Result, TrainingRun, WebhookDelivery
from twinlens.services.job_images import caller_metadata, stored_images

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
    inputs: dict[str, Any] = Field(description="What was sent (the first image's digest and type as `image`, every "
                                               "image with its view as `images`, texts) until purged")
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
        metadata=caller_metadata(job.meta),
        webhook_url=job.webhook_url,
        result=result_view(job.result) if job.result is not None else None,
    )


def _inputs_view(job: Job) -> dict[str, Any]:
    if job.inputs_purged_at is not None:
        return {"purged_at": job.inputs_purged_at.isoformat()}
    image = {"sha256": job.input_blob, "media_type": job.input_media_type} if job.input_blob else None
    # Every image in order (with its view when named); `image` stays the first one.
    images = [stored.as_dict() for stored in stored_images(job.input_blob, job.input_media_type, job.meta)]
    return {"image": image, "images": images, "texts": job.texts or {}}


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


# -- bulk scoring batches (services/batches.py) ---------------------------------------------

BatchStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


class BatchRowCounts(BaseModel):
    total: int = Field(description="Rows in the uploaded file (bad ones included)")
    done: int = Field(description="Rows with their answer: scored or failed")
    succeeded: int
    failed: int = Field(description="Rows that could not be scored: bad at upload or when scored")
    queued: int = Field(description="Rows not scored yet (left unscored by a cancel)")


class BadRow(BaseModel):
    line: int = Field(description="1-based line of the uploaded file (a CSV's header is line 1)")
    id: str | None = Field(description="The row's own id column, if it had one")
    field: str | None
    reason: str


class BatchView(BaseModel):
    id: uuid.UUID
    plugin: str
    status: BatchStatus = Field(description="succeeded: every row has its answer (some may have failed; see rows.failed)")
    filename: str
    model_version: ModelVersionRef
    rows: BatchRowCounts
    bad_rows: list[BadRow] | None = Field(description="The first bad rows, by line (the results file has every one); "
                                                      "null in lists")
    error: JobError | None = Field(description="Why the batch as a whole failed (its model could not be loaded)")
    results_url: str = Field(description="GET it for the answers as JSONL, one line per row in file order")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    purged_at: datetime | None = Field(description="Set once retention or erasure removed the rows and their answers")


class BatchList(BaseModel):
    data: list[BatchView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end")


def batch_view(batch: Batch, bad_rows: list[tuple[int, str | None, dict[str, Any]]] | None = None) -> BatchView:
    done = batch.rows_succeeded + batch.rows_failed
    return BatchView(
        id=batch.id,
        plugin=batch.plugin,
        status=batch.status,
        filename=batch.filename,
        model_version=model_ref(batch.model_version),
        rows=BatchRowCounts(total=batch.rows_total, done=done, succeeded=batch.rows_succeeded, failed=batch.rows_failed,
                            queued=max(0, batch.rows_total - done)),
        bad_rows=None if bad_rows is None else [
            BadRow(line=line, id=ref, field=error.get("field"), reason=error.get("reason", "")) for line, ref, error in bad_rows],
        error=JobError(**batch.error) if batch.error else None,
        results_url=f"/v1/batches/{batch.id}/results",
        created_at=batch.created_at,
        started_at=batch.started_at,
        finished_at=batch.finished_at,
        purged_at=batch.purged_at,
    )


# -- helpdesk connectors (services/connectors.py) -----------------------------------------------
class ConnectorView(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="The helpdesk: zendesk, freshdesk, or an installed connector package's name")
    name: str
    base_url: str
    plugin: str
    fields: dict[str, str] = Field(description="Decision key -> helpdesk field (Zendesk custom field id, Freshdesk cf_ name)")
    tag_prefix: str
    review_tag: str | None
    review_group: str | None
    attachment_hosts: list[str] = Field(description="Hosts besides the helpdesk's own that attachments may come from")
    write_back: bool
    enabled: bool
    credential_names: list[str] = Field(description="Which credentials are set; their values are never shown")
    intake_path: str = Field(description="Where the helpdesk's webhook posts (relative to this service's URL)")
    created_at: datetime
    updated_at: datetime


class ConnectorList(BaseModel):
    data: list[ConnectorView]


class ConnectorEventView(_View):
    id: uuid.UUID
    ticket_id: str | None
    kind: str = Field(description="intake, duplicate, ignored, call, attachment, job, write_back or failed")
    method: str | None
    url: str | None = Field(description="The helpdesk URL called, without its query")
    status_code: int | None
    attempt: int | None
    duration_ms: float | None
    error: str | None
    detail: str | None
    created_at: datetime


class ConnectorEventList(BaseModel):
    data: list[ConnectorEventView]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null at the end")


class ConnectorIntake(BaseModel):
    status: Literal["accepted", "duplicate", "ignored"] = Field(
        description="accepted: queued for a decision; duplicate: this ticket event was received before; ignored: needs none")
    ticket_id: str | None
    reason: str | None = None


# -- similar cases and search (services/search.py, docs/search.md) ---------------------------


class CorrectionView(BaseModel):
    labels: dict[str, Any] = Field(description="The reviewer's labels, per task")
    created_at: datetime


class SimilarCase(BaseModel):
    job_id: uuid.UUID
    score: float = Field(description="Cosine similarity to the query, -1 to 1 (higher is closer)")
    plugin: str
    created_at: datetime
    labels: dict[str, Any] = Field(description="Per task, the predicted label (multiclass), labels (multilabel) or value")
    correction: CorrectionView | None = Field(description="The latest correction a reviewer gave, if any")
    decision: dict[str, Any] = Field(description="The plugin's decision for that case")


class SearchQueryView(BaseModel):
    model_version: ModelVersionRef
    kind: str = Field(description="What was compared: fused (case to case), a modality (image, text...), or aligned (image-text space)")
    space: Literal["model", "aligned"] = Field(description="model: the model's own vectors; aligned: the shared image-text space")
    exact: bool = Field(description="True when every stored vector was compared (no approximate index was used)")


class SimilarCases(BaseModel):
    query: SearchQueryView
    data: list[SimilarCase]


# -- the learning loop (services/learning*.py, gate.py, shadow.py, drift.py) ------------------


class CorrectionExportView(BaseModel):
    path: str | None = Field(description="The data set file (in the plugin's own format) read_dataset takes")
    rows: int = Field(description="Corrected jobs written")
    skipped_purged: int = Field(description="Corrected jobs left out: retention (or a deletion) purged their inputs")
    skipped_no_labels: int = Field(description="Corrected jobs left out: their feedback has a comment but no labels")
    skipped_held_out: int = Field(description="Corrected jobs left out: reserved for the holdout, never trained on")


class HoldoutView(_View):
    id: uuid.UUID
    plugin: str
    version: int = Field(description="Versions only grow; the newest judges every candidate")
    kind: Literal["registered", "corrections"]
    data_path: str | None = Field(description="The registered labelled set; null for a corrections holdout")
    size: int = Field(description="Frozen corrected jobs (corrections); 0 for a registered set (its file decides)")
    created_at: datetime


class HoldoutList(BaseModel):
    data: list[HoldoutView]


class EvaluationView(_View):
    model_version_id: uuid.UUID
    holdout_id: uuid.UUID
    metrics: dict[str, Any] = Field(description="Per task: accuracy, macro_f1, ece, recall and support per class; "
                                                "latency_ms p50/p95; holdout_version")
    created_at: datetime


class EvaluationList(BaseModel):
    data: list[EvaluationView]


class GateCheckView(BaseModel):
    name: str
    passed: bool
    detail: str = Field(description="The check in words, with its numbers")
    value: float | None
    threshold: float | None


class GateReportView(_View):
    id: uuid.UUID
    plugin: str
    candidate_id: uuid.UUID
    champion_id: uuid.UUID | None
    holdout_id: uuid.UUID | None
    thresholds: dict[str, Any]
    checks: list[GateCheckView]
    passed: bool
    created_at: datetime


class GateReportList(BaseModel):
    data: list[GateReportView]


class PromotionView(BaseModel):
    promoted: bool = Field(description="Always true here: a blocked promotion answers 409 with the report")
    forced: bool
    model: ModelVersionView
    gate_report: GateReportView


class ShadowConfigView(BaseModel):
    model_id: uuid.UUID
    share: float = Field(description="Share of the scope's live jobs the challenger also runs on")


class ShadowSummaryView(BaseModel):
    model_id: uuid.UUID
    in_shadow: bool
    share: float | None
    jobs: int = Field(description="Live jobs it ran on in shadow")
    agreement: dict[str, float] = Field(description="Per task: share of those jobs where it agreed with the champion")
    corrected: dict[str, Any] = Field(description="Per task, on shadowed jobs reviewers corrected: n and the accuracy "
                                                  "of the challenger and of the champion")
    latency_ms: dict[str, float | None] = Field(description="The challenger's p50/p95 per job, preprocessing included")


class DriftDayView(BaseModel):
    day: str
    jobs: int
    class_mix: dict[str, dict[str, float]] = Field(description="Per task: share of jobs per top label")
    confidence: dict[str, Any] = Field(description="Per task: mean top-label confidence, share at or below each bucket")
    needs_review_share: float
    correction_rate: float = Field(description="Share of the day's jobs that reviewers corrected (so far)")


class DriftView(BaseModel):
    model_id: uuid.UUID
    model_version: str
    days: list[DriftDayView]


class ActivationView(_View):
    id: uuid.UUID
    scope: str = Field(description="The tenant's id, or global")
    plugin: str
    action: Literal["activate", "promote", "rollback"]
    model_version_id: uuid.UUID
    previous_model_version_id: uuid.UUID | None
    forced: bool = Field(description="Promoted past a failed (or missing) gate")
    reason: str | None
    gate_report_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    created_at: datetime


class ActivationList(BaseModel):
    data: list[ActivationView]


def gate_report_view(report) -> GateReportView:
    return GateReportView.model_validate(report)


# -- explanations (services/explanations.py) ----------------------------------------------------


class WordWeightView(BaseModel):
    text: str = Field(description="A word as the model read it (whitespace-separated)")
    weight: float = Field(description="Its push towards the head's label, scaled so the field's largest magnitude is 1")
    start: int = Field(description="Character offset of the word in the text")
    end: int


class HeatmapMeta(BaseModel):
    rows: int = Field(description="Grid rows (the image encoder's own resolution)")
    cols: int
    method: str = Field(description="grad-cam (CNN) or grad-cam on patch tokens (ViT-style)")
    overlay_url: str = Field(description="The heatmap drawn over the input image, as PNG")


class HeadExplanationView(BaseModel):
    label: str | None = Field(description="The label explained: the predicted (or top) one; null for regression")
    heatmap: HeatmapMeta | None
    words: dict[str, list[WordWeightView]] = Field(description="Per text field, the words with their weights")
    image_heatmaps: dict[str, HeatmapMeta] = Field(
        default_factory=dict, description="A job of several images: each image's heatmap, by its view or \"image N\" "
                                          "(`heatmap` is the one of the image that mattered most)")


class ExplanationView(BaseModel):
    job_id: uuid.UUID
    model_version: str
    reason: Literal["needs_review", "requested", "setting"]
    explained_by: str = Field(description="network, ensemble network member, linear member '...', or none")
    text_method: str | None
    notes: list[str]
    heads: dict[str, HeadExplanationView]
    duration_ms: int = Field(description="What computing it cost the worker")
    created_at: datetime


def explanation_view(row) -> ExplanationView:
    details = row.details or {}
    heads = {}
    for name, head in (details.get("heads") or {}).items():
        heatmap = head.get("heatmap")
        meta = None if heatmap is None else HeatmapMeta(
            **heatmap, overlay_url=f"/v1/jobs/{row.job_id}/heatmap.png?head={quote(name)}")
        per_image = {image: HeatmapMeta(**value, overlay_url=f"/v1/jobs/{row.job_id}/heatmap.png?head={quote(name)}&image={quote(image)}")
                     for image, value in (head.get("image_heatmaps") or {}).items()}
        heads[name] = HeadExplanationView(label=head.get("label"), heatmap=meta, image_heatmaps=per_image,
                                          words={f: [WordWeightView(**w) for w in spans] for f, spans in (head.get("words") or {}).items()})
    return ExplanationView(job_id=row.job_id, model_version=row.model_version, reason=row.reason,
                           explained_by=details.get("explained_by", "none"), text_method=details.get("text_method"),
                           notes=list(details.get("notes") or []), heads=heads, duration_ms=row.duration_ms, created_at=row.created_at)
