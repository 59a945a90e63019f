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

from twinlens.queue import publish_predict, publish_webhook
from twinlens.services import execution, webhooks
from twinlens.services.metrics import WEBHOOK_ATTEMPTS
from twinlens.worker import pipeline
from twinlens.worker.batching import BatchRunner
from twinlens.worker.context import WorkerContext, get_context

log = logging.getLogger(__name__)


def run_predict_jobs(
    job_ids: Sequence[str | uuid.UUID],
    context: WorkerContext | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Claim the given jobs and run them, batched with other waiting jobs of the same
    model version (see batching.py); each result is stored in its own transaction."""
    ctx = context or get_context()
    ids = [uuid.UUID(str(job_id)) for job_id in job_ids]
    with ctx.db.session() as session:
        claimed = execution.claim_jobs(session, ids, ctx.settings.job_max_attempts)
    pipeline.observe_since_created(claimed, "queue_wait")
    runner = BatchRunner(ctx, should_stop)
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
