"""The task code every worker runs, embedded or under Celery.

Each function is a task boundary: it owns its sessions and commits. Jobs are claimed in
one short transaction, run outside any transaction, and each result is written in its
own, so one bad input fails only its own job and a crash leaves nothing half-written.
Everything is idempotent by id: a job no longer queued is not claimed, a job no longer
running is not written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from twinlens import queue
from twinlens.contract.errors import InputError, TwinLensError
from twinlens.contract.spec import ModelSpec, TrainConfig
from twinlens.db.availability import database_unavailable
from twinlens.queue import publish_predict, publish_training, publish_webhook
from twinlens.services import execution, training, webhooks
from twinlens.services.execution import LivingWorkers
from twinlens.services.metrics import JOBS_RECOVERED, OUTBOX_PUBLISHED, WEBHOOK_ATTEMPTS
from twinlens.worker import batch_tasks, pipeline
from twinlens.worker import connector_tasks
from twinlens.worker import search_tasks
from twinlens.worker.batching import BatchRunner
from twinlens.worker.context import WorkerContext, get_context
from twinlens.worker.heartbeat import current_worker

log = logging.getLogger(__name__)
# A job committed this recently is being published by its submitter right now: the outbox
# leaves it alone so as not to publish it twice.
OUTBOX_GRACE_SECONDS = 5.0


def run_predict_jobs(
    job_ids: Sequence[str | uuid.UUID],
    context: WorkerContext | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Claim the given jobs and run them, batched with other waiting jobs of the same
    model version (see batching.py); each result is stored in its own transaction."""
    ctx = context or get_context()
    ids = [uuid.UUID(str(job_id)) for job_id in job_ids]
    worker = current_worker(ctx.settings)
    try:
        with ctx.db.session() as session:
            claimed = execution.claim_jobs(session, ids, ctx.settings.job_max_attempts, worker)
    except Exception as exc:
        if database_unavailable(exc):
            # This message is spent, so the jobs go back to the outbox: the sweep publishes
            # them again once the database answers.
            queue.forget_published([str(job_id) for job_id in ids])
        raise
    pipeline.observe_since_created(claimed, "queue_wait")
    runner = BatchRunner(ctx, should_stop, worker)
    runner.counts["claimed"] = len(claimed)
    return runner.run(claimed)


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


def sweep(
    context: WorkerContext | None = None, *, queued_older_than: float | None = None, living: LivingWorkers | None = None,
) -> dict[str, int]:
    """Recover lost work: re-queue the running jobs no living worker holds (given the
    heartbeats), publish queued jobs the broker never got (the outbox, in broker mode), and
    as a last resort re-queue jobs running for `job_stale_after_seconds` and re-publish
    old queued jobs and due webhook deliveries whose messages were lost."""
    ctx = context or get_context()
    older = ctx.settings.job_stale_after_seconds / 2 if queued_older_than is None else queued_older_than
    lost = _requeue_lost(ctx, living) if living is not None else 0
    unpublished = _publish_unpublished(ctx) if queue.uses_broker() else 0
    with ctx.db.session() as session:
        requeued = execution.requeue_stale_jobs(session, ctx.settings.job_stale_after_seconds, publish_predict)
    JOBS_RECOVERED.labels("stale").inc(requeued)
    with ctx.db.session() as session:
        queued = execution.queued_jobs(session, older_than=older)
        due = webhooks.due_deliveries(session)
    for job_id, plugin in queued:
        publish_predict(job_id, plugin)
    for delivery_id in due:
        publish_webhook(delivery_id, 0.0)
    return {"lost_worker": lost, "unpublished": unpublished, "requeued": requeued, "republished": len(queued),
            "deliveries": len(due), **sweep_training(ctx, older), **connector_tasks.sweep_connectors(ctx),
            "batches_requeued": batch_tasks.recover_batches(ctx, queued_older_than=older),
            "search_index_builds": search_tasks.request_index_builds(ctx)}


def _requeue_lost(ctx: WorkerContext, living: LivingWorkers) -> int:
    with ctx.db.session() as session:
        count = execution.requeue_jobs_of_lost_workers(session, living, ctx.settings.worker_heartbeat_ttl_seconds, publish_predict)
    JOBS_RECOVERED.labels("lost_worker").inc(count)
    return count


def _publish_unpublished(ctx: WorkerContext) -> int:
    with ctx.db.session() as session:
        count = execution.publish_unpublished(session, queue.published_among, publish_predict, grace_seconds=OUTBOX_GRACE_SECONDS)
    OUTBOX_PUBLISHED.inc(count)
    return count


def sweep_training(ctx: WorkerContext, queued_older_than: float) -> dict[str, int]:
    """Fail training runs whose worker vanished; re-publish queued ones the broker lost."""
    with ctx.db.session() as session:
        lost = training.fail_lost_runs(session, ctx.settings)
    with ctx.db.session() as session:
        queued = training.queued_runs(session, older_than=queued_older_than)
    for run_id in queued:
        publish_training(run_id)
    return {"training_failed": lost, "training_republished": len(queued)}


def purge_expired_inputs(context: WorkerContext | None = None) -> int:
    """Retention: the jobs' inputs (how many jobs), and the bulk batches' rows with them."""
    ctx = context or get_context()
    with ctx.db.session() as session:
        purged = execution.purge_expired_inputs(session, ctx.blobs, ctx.settings.retention_days)
    batch_tasks.purge_expired_batches(ctx)
    return purged


# -- training ---------------------------------------------------------------------------------


def run_training(run_id: str | uuid.UUID, context: WorkerContext | None = None) -> str | None:
    """Claim one training run, train, and register the bundle (inactive). Returns the run's
    final status, or None when the run was not ours to take (already taken or finished)."""
    ctx = context or get_context()
    with ctx.db.session() as session:
        claimed = training.claim_run(session, uuid.UUID(str(run_id)))
    if claimed is None:
        return None
    if claimed.kind == "align":  # an aligned image-text space (worker/search_tasks.py)
        return search_tasks.run_align(ctx, claimed)
    if claimed.kind != "standard":  # the learning loop's runs (corrections, evaluation)
        from twinlens.worker import learning

        return learning.run_claimed(ctx, claimed)
    log.info("training run %s (attempt %d): plugin %s, data %s -> %s", claimed.id, claimed.attempt,
             claimed.plugin, claimed.data_path, claimed.output_dir)
    try:
        outcome = _train(claimed)
        with ctx.db.session() as session:
            run = training.complete_run(session, claimed, outcome)
        return run.status if run is not None else None
    except Exception as exc:  # the run records why; nothing is half-registered
        log.warning("training run %s failed: %s", claimed.id, exc, exc_info=not isinstance(exc, TwinLensError))
        with ctx.db.session() as session:
            training.fail_run(session, claimed, training.describe_failure(exc))
        return "failed"


def _train(claimed: training.ClaimedRun) -> training.TrainingOutcome:
    from twinlens.contract.plugin import DatasetOptions
    from twinlens.contract.registry import check_schema_matches, get_plugin
    from twinlens.engine.names import check_engine_names  # the engine (torch) loads with the first run

    plugin = get_plugin(claimed.plugin)
    check_engine_names(ModelSpec.model_validate(claimed.model_spec))  # before spending time on the data
    dataset = plugin.read_dataset(claimed.data_path, DatasetOptions(**claimed.dataset))
    check_schema_matches(plugin, dataset.label_schema)
    return train_on(plugin, dataset, claimed)


def train_on(plugin, dataset, claimed: training.ClaimedRun) -> training.TrainingOutcome:
    """Train the run's model spec and config on `dataset` (the recipe or one network)."""
    from twinlens.engine.training import train_model

    spec = ModelSpec.model_validate(claimed.model_spec)
    config = TrainConfig.model_validate(claimed.train_config)
    if claimed.preset == "auto":
        from twinlens.engine.recipe import RecipeOptions, train_auto

        options = RecipeOptions(time_limit=claimed.time_limit_seconds, seed=config.seed, progress=False)
        result = train_auto(plugin, dataset, out_dir=claimed.output_dir, spec=spec, config=config, options=options)
    else:
        result = train_model(plugin, dataset, out_dir=claimed.output_dir, spec=spec, config=config)
    return training.TrainingOutcome(
        bundle_dir=result.bundle_dir, metrics=result.metrics, epochs_run=len(result.history),
        data_rows=len(dataset.samples), skipped_rows=len(dataset.skipped),
    )
