"""The learning loop's engine work on a worker: training from base data + corrections,
measuring models on a holdout (for the gate), and running challengers in shadow.

Runs of kind `corrections` and `evaluation` come through the training queue
(tasks.run_training hands them here once claimed); shadow runs start after each batch's
results are written (batching.py), on a thread of their own, so the champion's answer
never waits for its challenger.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from twinlens.contract.errors import TwinLensError
from twinlens.contract.plugin import Dataset, DatasetOptions, Plugin
from twinlens.contract.registry import check_schema_matches, get_plugin
from twinlens.contract.sample import Sample
from twinlens.contract.schema import LabelSchema
from twinlens.services import job_images, learning, learning_metrics, shadow, training
from twinlens.services.execution import ClaimedJob
from twinlens.worker.context import WorkerContext

log = logging.getLogger(__name__)
_shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twinlens-shadow")


def run_claimed(ctx: WorkerContext, claimed: training.ClaimedRun) -> str | None:
    log.info("training run %s (attempt %d): %s for plugin %s", claimed.id, claimed.attempt, claimed.kind, claimed.plugin)
    try:
        if claimed.kind == learning.CORRECTIONS:
            return _corrections_run(ctx, claimed)
        if claimed.kind == learning.EVALUATION:
            return _evaluation_run(ctx, claimed)
        raise TwinLensError(f"unknown training run kind {claimed.kind!r}")
    except Exception as exc:  # the run records why; nothing is half-registered
        log.warning("training run %s failed: %s", claimed.id, exc, exc_info=not isinstance(exc, TwinLensError))
        with ctx.db.session() as session:
            training.fail_run(session, claimed, training.describe_failure(exc))
        return "failed"


# -- base data + corrections -------------------------------------------------------------------
def _corrections_run(ctx: WorkerContext, claimed: training.ClaimedRun) -> str | None:
    from twinlens.contract.spec import ModelSpec
    from twinlens.engine.names import check_engine_names
    from twinlens.worker.tasks import train_on

    plugin = get_plugin(claimed.plugin)
    check_engine_names(ModelSpec.model_validate(claimed.model_spec))
    base = plugin.read_dataset(claimed.data_path, DatasetOptions(**claimed.dataset))
    check_schema_matches(plugin, base.label_schema)
    staging = Path(tempfile.mkdtemp(prefix="twinlens-corrections-"))
    try:  # the export is a working copy of job inputs: it is gone when the run ends
        with ctx.db.session() as session:
            summary = learning.export_training_corrections(
                session, ctx.blobs, claimed.tenant_id, claimed.plugin, staging / "corrections", ctx.settings,
                since=learning.parse_since(claimed.request.get("since")))
        fixes = _read_like(plugin, Path(summary.path), claimed.dataset, base.label_schema) if summary.rows else []
        dataset = combine(base, fixes, claimed.request.get("combine", "deduplicated"),
                          int(claimed.request.get("correction_weight", 2)))
        if claimed.request.get("shuffle_labels"):
            dataset = shuffled_labels(dataset, seed=int(claimed.train_config.get("seed", 0)))
        outcome = train_on(plugin, dataset, claimed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    outcome = replace(outcome, metrics={**outcome.metrics, "corrections": {
        k: v for k, v in summary.as_dict().items() if k not in ("job_ids", "path")}, "base_rows": len(base.samples)})
    holdout_id = learning.holdout_of(claimed) if claimed.request.get("evaluate", True) else None
    holdout = _holdout(ctx, holdout_id) if holdout_id else None
    with ctx.db.session() as session:
        candidates = learning.models_to_evaluate(session, claimed, None)  # the champion, measured on the same data
    measured = {m.id: _measure(ctx, plugin, m.bundle_path, holdout) for m in candidates} if holdout else {}
    candidate_figures = _measure(ctx, plugin, str(outcome.bundle_dir), holdout) if holdout else None
    with ctx.db.session() as session:
        run = training.complete_run(session, claimed, outcome)
        if run is not None and holdout is not None:
            learning.record_evaluation(session, run.model_version_id, holdout, candidate_figures)
            for model_id, figures in measured.items():
                learning.record_evaluation(session, model_id, holdout, figures)
        return run.status if run is not None else None


def _read_like(plugin: Plugin, path: Path, dataset_options: dict[str, Any], schema: LabelSchema) -> list[Sample]:
    """The exported corrections, read as the base data was (for plugins whose labels come
    from the data: against the base data's schema)."""
    return read_for_schema(plugin, path, DatasetOptions(**{**dataset_options, "label_cols": schema.task_names}), schema).samples


def read_for_schema(plugin: Plugin, path: Path, options: DatasetOptions, schema: LabelSchema) -> Dataset:
    import inspect

    if plugin.label_schema() is None and "label_schema" in inspect.signature(plugin.read_dataset).parameters:
        return plugin.read_dataset(path, options, label_schema=schema)  # type: ignore[call-arg]
    return plugin.read_dataset(path, options)


def combine(base: Dataset, corrections: list[Sample], how: str, weight: int) -> Dataset:
    """Base data + corrections. `deduplicated`: a correction replaces every base row (and
    earlier correction) with the same inputs; `weighted`: each correction is added
    `weight` times."""
    if how == "weighted":
        return Dataset(samples=[*base.samples, *[s for s in corrections for _ in range(max(1, weight))]],
                       label_schema=base.label_schema, skipped=base.skipped)
    latest = {fingerprint(sample): sample for sample in corrections}
    kept = [sample for sample in base.samples if fingerprint(sample) not in latest]
    return Dataset(samples=[*kept, *latest.values()], label_schema=base.label_schema, skipped=base.skipped)


def fingerprint(sample: Sample) -> str:
    digest = hashlib.sha256()
    for name in sorted(sample.texts):
        digest.update(f"{name}\0{' '.join((sample.texts[name] or '').casefold().split())}\0".encode())
    if sample.image is not None:
        digest.update(sample.image.tobytes())
    return digest.hexdigest()


def shuffled_labels(dataset: Dataset, seed: int) -> Dataset:
    """The control of the gate: the same inputs with their labels dealt out at random."""
    labels = [dict(sample.labels) for sample in dataset.samples]
    random.Random(seed).shuffle(labels)
    samples = [replace(sample, labels=label) for sample, label in zip(dataset.samples, labels)]
    return Dataset(samples=samples, label_schema=dataset.label_schema, skipped=dataset.skipped)


# -- measuring on a holdout ------------------------------------------------------------------
def _evaluation_run(ctx: WorkerContext, claimed: training.ClaimedRun) -> str | None:
    plugin = get_plugin(claimed.plugin)
    holdout = _holdout(ctx, learning.holdout_of(claimed))
    with ctx.db.session() as session:
        targets = learning.models_to_evaluate(session, claimed)
    measured = {m.id: _measure(ctx, plugin, m.bundle_path, holdout) for m in targets}
    with ctx.db.session() as session:
        for model_id, figures in measured.items():
            learning.record_evaluation(session, model_id, holdout, figures)
        summary = {"holdout_id": str(holdout.id), "holdout_version": holdout.version,
                   "models": {str(model_id): figures for model_id, figures in measured.items()}}
        return "succeeded" if learning.finish_evaluation_run(session, claimed, summary) else None


def _holdout(ctx: WorkerContext, holdout_id) -> learning.HoldoutData:
    with ctx.db.session() as session:
        return learning.holdout_data(session, ctx.blobs, holdout_id)


def _measure(ctx: WorkerContext, plugin: Plugin, bundle_path: str, holdout: learning.HoldoutData) -> dict[str, Any]:
    """The gate's figures of one bundle on the holdout: every example predicted alone and
    timed (preprocessing included), after one warm-up."""
    from twinlens.engine.predictor import Predictor

    predictor = Predictor.from_bundle(bundle_path, runtime=ctx.settings.runtime)
    samples = _holdout_samples(plugin, holdout, predictor.label_schema)
    if not samples:
        raise TwinLensError(f"holdout v{holdout.version} has no examples left to measure on")
    predictor.predict_encoded([predictor.preprocess(samples[0])], contributions=False)
    heads, latencies = [], []
    for sample in samples:
        started = time.perf_counter()
        prediction = predictor.predict_encoded([predictor.preprocess(sample)], contributions=False)[0]
        latencies.append((time.perf_counter() - started) * 1000.0)
        heads.append(prediction.to_dict()["heads"])
    return learning_metrics.figures(predictor.label_schema, heads, [s.labels for s in samples], latencies)


def _holdout_samples(plugin: Plugin, holdout: learning.HoldoutData, schema: LabelSchema) -> list[Sample]:
    if holdout.data_path is not None:
        options = DatasetOptions(label_cols=schema.task_names, skip_bad_rows=True)
        return read_for_schema(plugin, holdout.data_path, options, schema).samples
    samples = []
    for example in holdout.examples:
        sample = plugin.prepare(example.raw)
        sample.id, sample.labels = example.id, dict(example.labels)
        samples.append(sample)
    return samples


# -- shadow ----------------------------------------------------------------------------------------
def shadow_later(ctx: WorkerContext, plugin: Plugin, jobs: list[ClaimedJob]) -> None:
    """After a batch's results are written: run its jobs' challengers, off the batch's path."""
    if jobs:
        _shadow_pool.submit(_shadow_safely, ctx, plugin, list(jobs))


def _shadow_safely(ctx: WorkerContext, plugin: Plugin, jobs: list[ClaimedJob]) -> None:
    try:
        run_shadow(ctx, plugin, jobs)
    except Exception:  # a challenger's failure is never the job's
        log.exception("shadow run failed for %d job(s)", len(jobs))


def run_shadow(ctx: WorkerContext, plugin: Plugin, jobs: list[ClaimedJob]) -> int:
    by_id = {job.id: job for job in jobs}
    with ctx.db.session() as session:
        tasks = shadow.plan(session, list(by_id))
    stored = 0
    for task in tasks:
        job = by_id[task.job_id]
        predictor = ctx.models.get(task.challenger_id, task.bundle_path, task.challenger_version)
        started = time.perf_counter()
        images = [(ctx.blobs.get(image.sha256), image) for image in job.stored_images()]
        sample = plugin.prepare(job_images.raw_input(images, job.texts, job.metadata))
        prediction = predictor.predict_encoded([predictor.preprocess(sample)], contributions=False)[0]
        prediction.extras.update(sample.meta.get("extras", {}))
        decision = plugin.decide(prediction)
        latency = (time.perf_counter() - started) * 1000.0
        data = _jsonable(prediction.to_dict())
        with ctx.db.session() as session:
            stored += shadow.record(session, task, data["heads"], _jsonable(decision), latency)
    return stored


def _jsonable(value: Any) -> Any:
    from twinlens.worker.pipeline import _jsonable as plain

    return plain(value)
