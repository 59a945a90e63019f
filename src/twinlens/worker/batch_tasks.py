"""Scoring a bulk batch on a worker (the `twinlens.score_batch` task, embedded or Celery).

One task claims the batch, scores its queued lines in micro-batches with the engine's
bulk path (`engine.bulk.score_stream`: loading and preprocessing on threads one
micro-batch ahead of the model), writes each micro-batch's answers in one transaction,
and after `bulk_slice_seconds` (at most half the task time limit) hands the batch back to
the queue, which publishes it again: jobs queued behind a big file wait a slice, not the
whole file. A cancel or delete is seen at the next micro-batch.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from twinlens.contract.json_values import json_safe
from twinlens.contract.registry import get_plugin
from twinlens.services import batches
from twinlens.services.batches import ClaimedBatch, QueuedLine
from twinlens.services.metrics import BATCH_SIZE, JOB_STAGE_SECONDS
from twinlens.worker.batching import SHUTTING_DOWN
from twinlens.worker.context import WorkerContext, get_context
from twinlens.worker.heartbeat import current_worker

log = logging.getLogger(__name__)


def run_batch(batch_id: str | uuid.UUID, context: WorkerContext | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Score one slice of the batch; the counts of what this task did."""
    ctx = context or get_context()
    stop = should_stop or SHUTTING_DOWN.is_set
    with ctx.db.session() as session:
        claimed = batches.claim_batch(session, uuid.UUID(str(batch_id)), current_worker(ctx.settings))
    if claimed is None:  # taken by another worker, finished, canceled or deleted
        return {"claimed": 0}
    counts = {"claimed": 1, "scored": 0, "failed": 0, "micro_batches": 0}
    try:
        predictor = ctx.models.get(claimed.model_version_id, claimed.bundle_path, claimed.model_version)
        plugin = get_plugin(claimed.plugin)
    except Exception as exc:  # a broken bundle or plugin fails the batch, not the worker
        log.exception("batch %s: cannot load model %s", claimed.id, claimed.model_version)
        with ctx.db.session() as session:
            batches.fail_batch(session, claimed, f"model {claimed.model_version} could not be loaded: {exc}")
        return counts
    # An exception (the database went away) leaves the batch running: the sweep queues it
    # again once its heartbeat is stale, and its scored lines stay scored.
    _score_slice(ctx, claimed, plugin, predictor, counts, stop)
    with ctx.db.session() as session:
        handed_back = batches.end_slice(session, claimed)
    log.info("batch %s: %d scored, %d failed in %d micro-batch(es)%s", claimed.id, counts["scored"], counts["failed"],
             counts["micro_batches"], "; handed back for the next slice" if handed_back else "")
    return counts


def _score_slice(ctx: WorkerContext, claimed: ClaimedBatch, plugin, predictor, counts: dict[str, Any],
                 stop: Callable[[], bool]) -> None:
    from twinlens.engine.bulk import BulkOptions, score_stream  # torch: only where models run

    settings = ctx.settings
    deadline = time.monotonic() + min(settings.bulk_slice_seconds, settings.task_time_limit_seconds / 2)
    options = BulkOptions(batch_size=settings.bulk_micro_batch_size, threads=settings.prepare_threads)

    def load(queued: QueuedLine):
        return batches.load_line_input(plugin, settings, queued.inputs)

    started = time.perf_counter()
    for scored in score_stream(plugin, predictor, batches.queued_lines(ctx.db, claimed.id), load, options):
        answers = [_answer(entry, claimed.model_version) for entry in scored]
        with ctx.db.session() as session:
            still_ours = batches.record_answers(session, claimed, answers)
        counts["micro_batches"] += 1
        counts["scored"] += sum(1 for answer in answers if answer["status"] == "succeeded")
        counts["failed"] += sum(1 for answer in answers if answer["status"] == "failed")
        BATCH_SIZE.labels(plugin.name).observe(len(answers))
        JOB_STAGE_SECONDS.labels(plugin.name, "bulk_micro_batch").observe(time.perf_counter() - started)
        started = time.perf_counter()
        if not still_ours or stop() or time.monotonic() >= deadline:
            return


def _answer(entry, model_version: str) -> dict[str, Any]:
    queued: QueuedLine = entry.item
    if entry.error is not None:
        return {"line": queued.line, "status": "failed", "error": entry.error}
    # The version as the API names it everywhere (plugin@hash), not the bundle's bare hash.
    return {"line": queued.line, "status": "succeeded", "output": _jsonable({**entry.answer, "model_version": model_version})}


def _jsonable(value: Any) -> Any:
    """Plain JSON (numpy scalars from plugins become numbers; NaN becomes null)."""
    return json_safe(json.loads(json.dumps(value, default=_coerce)))


def _coerce(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def recover_batches(context: WorkerContext | None = None, *, queued_older_than: float | None = None) -> int:
    """The sweep's part for batches: queue again those whose worker stopped beating, and
    publish the queued ones whose messages may have been lost."""
    ctx = context or get_context()
    older = ctx.settings.job_stale_after_seconds / 2 if queued_older_than is None else queued_older_than
    with ctx.db.session() as session:
        return batches.recover_batches(session, ctx.settings.job_stale_after_seconds, older)


def purge_expired_batches(context: WorkerContext | None = None) -> int:
    ctx = context or get_context()
    with ctx.db.session() as session:
        return batches.purge_expired_batches(session, ctx.settings.retention_days)
