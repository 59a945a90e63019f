"""The steps one job goes through on a worker: prepare, predict (in a batch), decide,
write. Each step that can fail fails only its own job."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twinlens.blobs import BlobNotFound
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin
from twinlens.contract.prediction import Prediction
from twinlens.db.availability import database_unavailable
from twinlens.db.base import utcnow
from twinlens.logging_setup import log_context
from twinlens.services import drift, execution, explanations, job_images, zero_shot_models
from twinlens.services.execution import ClaimedJob, JobOutcome
from twinlens.services.metrics import BATCH_SIZE, JOB_STAGE_SECONDS, JOBS_FINISHED
from twinlens.worker import explaining, search_tasks
from twinlens.worker.context import WorkerContext

log = logging.getLogger(__name__)


def in_job_log_context(step):
    """Every line the step logs names its job and model version (the ClaimedJob argument)."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        job = next(value for value in (*args, *kwargs.values()) if isinstance(value, ClaimedJob))
        with log_context(job_id=str(job.id), model_version=job.model_version):
            return step(*args, **kwargs)

    return run


@dataclass
class PreparedBatch:
    """Jobs of one model version with their inputs turned into model-ready tensors."""

    plugin: Plugin
    predictor: Any
    ready: list[tuple[ClaimedJob, Any, dict[str, Any]]] = field(default_factory=list)  # (job, encoded, extras)
    statuses: list[str] = field(default_factory=list)  # of jobs that already failed

    def encoded_of(self, job: ClaimedJob) -> Any:
        return next((encoded for ready, encoded, _ in self.ready if ready.id == job.id), None)


@in_job_log_context
def prepare_job(ctx: WorkerContext, plugin: Plugin, predictor: Any, job: ClaimedJob) -> tuple[Any, dict[str, Any]] | str:
    """Decode, clean, OCR... (the plugin) then resize and tokenise (the engine). CPU work,
    run on worker threads. Returns (encoded, extras) or the failed job's status."""
    started = time.perf_counter()
    try:
        images = [(ctx.blobs.get(image.sha256), image) for image in job.stored_images()]
        raw = job_images.raw_input(images, job.texts, job.metadata)
        sample = plugin.prepare(raw)
        sample.id = str(job.id)
        encoded = predictor.preprocess(sample)
    except InputError as exc:
        return fail(ctx, job, exc.reason, exc.field)
    except BlobNotFound:
        return fail(ctx, job, "the input image is no longer stored", "image")
    except Exception as exc:
        log.exception("preparing job %s failed", job.id)
        return fail(ctx, job, f"preprocessing failed: {exc.__class__.__name__}: {exc}")
    JOB_STAGE_SECONDS.labels(job.plugin, "prepare").observe(time.perf_counter() - started)
    return encoded, dict(sample.meta.get("extras", {}))


def predict_batch(batch: PreparedBatch) -> list[tuple[ClaimedJob, Prediction | Exception, dict[str, Any]]]:
    """One model call for the batch; if it fails, one by one, so a bad sample fails only
    its own job (its entry is then the exception)."""
    if not batch.ready:
        return []
    started = time.perf_counter()
    encoded = [item for _, item, _ in batch.ready]
    try:
        predictions: list[Any] = batch.predictor.predict_encoded(encoded)
    except Exception:
        log.exception("batch of %d failed; retrying one by one", len(encoded))
        predictions = [_predict_one(batch.predictor, item) for item in encoded]
    BATCH_SIZE.labels(batch.plugin.name).observe(len(encoded))
    JOB_STAGE_SECONDS.labels(batch.plugin.name, "predict").observe(time.perf_counter() - started)
    return [(job, prediction, extras) for (job, _, extras), prediction in zip(batch.ready, predictions)]


def _predict_one(predictor: Any, encoded: Any) -> Any:
    try:
        return predictor.predict_encoded([encoded])[0]
    except Exception as exc:
        return exc


@dataclass
class DecidedBatch:
    """A batch's outcomes, ready to write: what failed already has its status."""

    statuses: list[str]
    decided: list[tuple[ClaimedJob, Prediction, JobOutcome]]
    explained: dict[Any, Any]


def decide_batch(ctx: WorkerContext, plugin: Plugin, results: Iterable[tuple[ClaimedJob, Prediction | Exception, dict[str, Any]]],
                 batch: PreparedBatch | None = None) -> DecidedBatch:
    """The plugin's decisions and the explanations. This step may run the model again
    (heatmaps hook into it), so it runs where the model runs, never beside another batch."""
    statuses: list[str] = []
    decided: list[tuple[ClaimedJob, Prediction, JobOutcome]] = []
    for job, prediction, extras in results:
        outcome = _decided(ctx, plugin, job, prediction, extras)
        if isinstance(outcome, str):
            statuses.append(outcome)
        else:
            decided.append((job, prediction, outcome))
    explained = explaining.explain_decided(ctx.settings, batch, decided)  # heatmaps, word weights (by job id)
    return DecidedBatch(statuses, decided, explained)


def write_batch(ctx: WorkerContext, batch: DecidedBatch) -> list[str]:
    """Every result in one transaction, each inside its own savepoint, so a write that fails
    rolls back (and then fails) only its own job while the batch pays for one commit, not
    one per job. Only the database: it may run on another thread while the model runs."""
    statuses, decided = list(batch.statuses), batch.decided
    written: dict[Any, bool] = {}  # by job id
    unwritable: list[tuple[ClaimedJob, Exception]] = []
    with ctx.db.session() as session:
        for job, prediction, outcome in decided:
            try:
                with session.begin_nested():
                    written[job.id] = execution.complete_job(session, job, outcome)
                    if written[job.id]:  # the case's vectors, in the result's transaction (similar-case search)
                        search_tasks.store_job_vectors(session, job, prediction)
                        explanations.store(session, job.id, batch.explained.get(job.id))
            except Exception as exc:  # its savepoint is rolled back; the others stand
                if database_unavailable(exc):
                    raise  # not this job's fault: the task hands its jobs back (tasks.py)
                written.pop(job.id, None)
                unwritable.append((job, exc))
    for job, prediction, outcome in decided:
        if job.id not in written:
            continue
        with log_context(job_id=str(job.id), model_version=job.model_version):
            if written[job.id]:
                drift.observe_prediction(job.plugin, job.model_version, outcome.heads, outcome.decision)
            observe_since_created([job], "total")
            statuses.append(counted(job, "succeeded" if written[job.id] else "skipped"))
    for job, exc in unwritable:
        log.error("storing the result of job %s failed: %s: %s", job.id, exc.__class__.__name__, exc)
        statuses.append(fail(ctx, job, f"storing the result failed: {exc.__class__.__name__}"))
    return statuses


@in_job_log_context
def _decided(ctx: WorkerContext, plugin: Plugin, job: ClaimedJob, prediction: Prediction | Exception,
             extras: dict[str, Any]) -> JobOutcome | str:
    """The job's outcome (the plugin's decision), or the failed job's status."""
    if isinstance(prediction, Exception):
        return fail(ctx, job, f"the model failed on this input: {prediction.__class__.__name__}: {prediction}")
    prediction.extras.update(extras)
    started = time.perf_counter()
    try:
        outcome = _outcome(zero_shot_models.require_review(plugin.decide(prediction), prediction.zero_shot), prediction)
    except Exception as exc:
        log.exception("decide() failed for job %s", job.id)
        return fail(ctx, job, f"the plugin's decision failed: {exc.__class__.__name__}: {exc}")
    JOB_STAGE_SECONDS.labels(job.plugin, "decide").observe(time.perf_counter() - started)
    return outcome


@in_job_log_context
def fail(ctx: WorkerContext, job: ClaimedJob, reason: str, field_name: str | None = None) -> str:
    with ctx.db.session() as session:
        written = execution.fail_job(session, job.id, reason, field_name, attempt=job.attempts)
    return counted(job, "failed" if written else "skipped")


def counted(job: ClaimedJob, status: str) -> str:
    """Count a finished job; "skipped" means another worker or a delete got there first."""
    if status != "skipped":
        JOBS_FINISHED.labels(job.plugin, status).inc()
        waited = (utcnow() - job.created_at).total_seconds() * 1000.0 if job.created_at is not None else None
        log.info("job %s", status, extra={"status": status, "duration_ms": None if waited is None else round(waited, 2)})
    return status


def observe_since_created(jobs: Iterable[ClaimedJob], stage: str) -> None:
    now = utcnow()
    for job in jobs:
        if job.created_at is not None:
            JOB_STAGE_SECONDS.labels(job.plugin, stage).observe((now - job.created_at).total_seconds())


def _outcome(decision: dict[str, Any], prediction: Prediction) -> JobOutcome:
    data = _jsonable(prediction.to_dict())
    explanation = {key: data[key] for key in ("contributions", "inputs_present", "zero_shot", "extras")}
    if data.get("image_contributions"):  # a case of several images: each image's share
        explanation["image_contributions"] = data["image_contributions"]
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
