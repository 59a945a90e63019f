"""The task code every worker runs, embedded or under Celery.

Each function is a task boundary: it owns its sessions and commits. Jobs are claimed in
one short transaction, run outside any transaction, and each result is written in its
own, so one bad input fails only its own job and a crash leaves nothing half-written.
Everything is idempotent by id: a job no longer queued is not claimed, a job no longer
running is not written.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from twinlens.blobs import BlobNotFound
from twinlens.core.errors import InputError
from twinlens.core.plugin import Plugin, RawInput
from twinlens.core.prediction import Prediction
from twinlens.core.registry import get_plugin
from twinlens.core.sample import Sample
from twinlens.db.base import utcnow
from twinlens.queue import publish_predict, publish_webhook
from twinlens.services import execution, webhooks
from twinlens.services.execution import ClaimedJob, JobOutcome
from twinlens.services.metrics import BATCH_SIZE, JOB_STAGE_SECONDS, JOBS_FINISHED, WEBHOOK_ATTEMPTS
from twinlens.worker.context import WorkerContext, get_context

log = logging.getLogger(__name__)


def run_predict_jobs(job_ids: Sequence[str | uuid.UUID], context: WorkerContext | None = None) -> dict[str, int]:
    """Claim the given jobs, predict them in one batch per model version, store results."""
    ctx = context or get_context()
    ids = [uuid.UUID(str(job_id)) for job_id in job_ids]
    with ctx.db.session() as session:
        claimed = execution.claim_jobs(session, ids, ctx.settings.job_max_attempts)
    _observe_since_created(claimed, "queue_wait")
    counts = {"claimed": len(claimed), "succeeded": 0, "failed": 0, "skipped": 0}
    for group in _by_model(claimed):
        for status in _run_group(ctx, group):
            counts[status] += 1
    return counts


def _by_model(claimed: Iterable[ClaimedJob]) -> list[list[ClaimedJob]]:
    groups: dict[uuid.UUID, list[ClaimedJob]] = defaultdict(list)
    for job in claimed:
        groups[job.model_version_id].append(job)
    return list(groups.values())


def _run_group(ctx: WorkerContext, group: list[ClaimedJob]) -> list[str]:
    first = group[0]
    try:
        predictor = ctx.models.get(first.model_version_id, first.bundle_path, first.model_version)
        plugin = get_plugin(first.plugin)
    except Exception as exc:  # a broken bundle or plugin fails these jobs, not the worker
        log.exception("cannot load model %s", first.model_version)
        return [_fail(ctx, job, f"model {first.model_version} could not be loaded: {exc}") for job in group]
    statuses: list[str] = []
    ready: list[tuple[ClaimedJob, Sample]] = []
    for job in group:
        sample, failed = _prepare(ctx, plugin, job)
        if failed:
            statuses.append(failed)
        else:
            ready.append((job, sample))
    for job, prediction in _predict(predictor, ready, plugin.name):
        statuses.append(_finish(ctx, plugin, job, prediction))
    return statuses


def _prepare(ctx: WorkerContext, plugin: Plugin, job: ClaimedJob) -> tuple[Sample | None, str | None]:
    started = time.perf_counter()
    try:
        image = ctx.blobs.get(job.input_blob) if job.input_blob else None
        raw = RawInput(image_bytes=image, media_type=job.media_type, texts=job.texts, metadata=job.metadata)
        sample = plugin.prepare(raw)
    except InputError as exc:
        return None, _fail(ctx, job, exc.reason, exc.field)
    except BlobNotFound:
        return None, _fail(ctx, job, "the input image is no longer stored", "image")
    except Exception as exc:
        log.exception("preparing job %s failed", job.id)
        return None, _fail(ctx, job, f"preprocessing failed: {exc.__class__.__name__}: {exc}")
    sample.id = str(job.id)
    JOB_STAGE_SECONDS.labels(job.plugin, "prepare").observe(time.perf_counter() - started)
    return sample, None


def _predict(predictor: Any, ready: list[tuple[ClaimedJob, Sample]], plugin: str) -> list[tuple[ClaimedJob, Any]]:
    """One model call for the batch; if it fails, retry one by one so a single bad sample
    fails only its own job (its entry is then the exception)."""
    if not ready:
        return []
    started = time.perf_counter()
    try:
        predictions: list[Any] = predictor.predict([sample for _, sample in ready])
    except Exception:
        log.exception("batch of %d failed; retrying one by one", len(ready))
        predictions = [_predict_one(predictor, sample) for _, sample in ready]
    BATCH_SIZE.labels(plugin).observe(len(ready))
    JOB_STAGE_SECONDS.labels(plugin, "predict").observe(time.perf_counter() - started)
    return [(job, prediction) for (job, _), prediction in zip(ready, predictions)]


def _predict_one(predictor: Any, sample: Sample) -> Any:
    try:
        return predictor.predict([sample])[0]
    except Exception as exc:
        return exc


def _finish(ctx: WorkerContext, plugin: Plugin, job: ClaimedJob, prediction: Prediction | Exception) -> str:
    if isinstance(prediction, Exception):
        return _fail(ctx, job, f"the model failed on this input: {prediction.__class__.__name__}: {prediction}")
    started = time.perf_counter()
    try:
        outcome = _outcome(plugin.decide(prediction), prediction)
    except Exception as exc:
        log.exception("decide() failed for job %s", job.id)
        return _fail(ctx, job, f"the plugin's decision failed: {exc.__class__.__name__}: {exc}")
    JOB_STAGE_SECONDS.labels(job.plugin, "decide").observe(time.perf_counter() - started)
    with ctx.db.session() as session:
        written = execution.complete_job(session, job, outcome)
    _observe_since_created([job], "total")
    return _counted(job, "succeeded" if written else "skipped")


def _observe_since_created(jobs: Iterable[ClaimedJob], stage: str) -> None:
    now = utcnow()
    for job in jobs:
        if job.created_at is not None:
            JOB_STAGE_SECONDS.labels(job.plugin, stage).observe((now - job.created_at).total_seconds())


def _outcome(decision: dict[str, Any], prediction: Prediction) -> JobOutcome:
    data = _jsonable(prediction.to_dict())
    explanation = {key: data[key] for key in ("contributions", "inputs_present", "zero_shot", "extras")}
    return JobOutcome(heads=data["heads"], decision=_jsonable(decision), explanation=explanation)


def _jsonable(value: Any) -> Any:
    """Plain JSON types only (numpy scalars from plugins become floats/ints)."""
    return json.loads(json.dumps(value, default=_coerce))


def _coerce(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _fail(ctx: WorkerContext, job: ClaimedJob, reason: str, field: str | None = None) -> str:
    with ctx.db.session() as session:
        written = execution.fail_job(session, job.id, reason, field)
    return _counted(job, "failed" if written else "skipped")


def _counted(job: ClaimedJob, status: str) -> str:
    """Count a finished job; "skipped" means another worker or a delete got there first."""
    if status != "skipped":
        JOBS_FINISHED.labels(job.plugin, status).inc()
    return status


def deliver_webhook(delivery_id: str | uuid.UUID, context: WorkerContext | None = None) -> str | None:
    """One delivery attempt; schedules its retry. None when it was not due or not ours."""
    ctx = context or get_context()
    with ctx.db.session() as session:
        message = webhooks.lease_for_sending(session, uuid.UUID(str(delivery_id)), ctx.settings)
    if message is None:
        return None
    outcome = webhooks.send_signed(message, ctx.settings)
    with ctx.db.session() as session:
        delivery = webhooks.record_attempt(session, message, outcome, ctx.settings)
        status = delivery.status
    WEBHOOK_ATTEMPTS.labels("ok" if outcome.ok else "error").inc()
    log.info("webhook %s attempt %d to %s: %s -> %s", message.delivery_id, message.attempt, message.url,
             outcome.status_code or outcome.error, status)
    return status


def sweep(context: WorkerContext | None = None, *, queued_older_than: float | None = None) -> dict[str, int]:
    """Recover lost work: re-queue jobs whose worker vanished, re-publish queued jobs and
    due webhook deliveries whose messages were lost."""
    ctx = context or get_context()
    older = ctx.settings.job_stale_after_seconds / 2 if queued_older_than is None else queued_older_than
    with ctx.db.session() as session:
        requeued = execution.requeue_stale_jobs(session, ctx.settings.job_stale_after_seconds, publish_predict)
    with ctx.db.session() as session:
        queued = execution.queued_jobs(session, older_than=older)
        due = webhooks.due_deliveries(session)
    for job_id, plugin in queued:
        publish_predict(job_id, plugin)
    for delivery_id in due:
        publish_webhook(delivery_id, 0.0)
    return {"requeued": requeued, "republished": len(queued), "deliveries": len(due)}


def purge_expired_inputs(context: WorkerContext | None = None) -> int:
    ctx = context or get_context()
    with ctx.db.session() as session:
        return execution.purge_expired_inputs(session, ctx.blobs, ctx.settings.retention_days)
