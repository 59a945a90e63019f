"""Dynamic micro-batching on top of the database.

A worker woken for one job claims it, then claims other queued jobs of the same model
version until the batch holds `batch_max_size` or `batch_max_delay_ms` has passed (the
database is the queue of record, so any worker may batch any waiting job; the messages
of jobs batched elsewhere later find them finished and do nothing). While the model runs
one batch, the next is claimed and prepared (decode, OCR, resize, tokenise) on CPU
threads, for at most `batch_drain_seconds`, then the task returns. A batch's results are
written on a thread of their own while the model runs the next batch (one write in flight
at most; the task returns only once every result it took is written).

A job on its second or later attempt may be what killed a worker, so it runs alone: an
input that always kills its worker then fails only itself.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from twinlens.contract.registry import get_plugin
from twinlens.services import execution
from twinlens.services.execution import ClaimedJob
from twinlens.worker import learning, pipeline
from twinlens.worker.context import WorkerContext
from twinlens.worker.heartbeat import HELD
from twinlens.worker.model_cache import model_turn
from twinlens.worker.pipeline import PreparedBatch

log = logging.getLogger(__name__)

# Set when the worker is asked to stop (SIGTERM): finish what is held, claim nothing more.
SHUTTING_DOWN = threading.Event()

_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(name: str, threads: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if name not in _pools:
            _pools[name] = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"twinlens-{name}")
        return _pools[name]


def by_model(claimed: list[ClaimedJob]) -> list[list[ClaimedJob]]:
    groups: dict = defaultdict(list)
    for job in claimed:
        groups[job.model_version_id].append(job)
    return list(groups.values())


class BatchRunner:
    """Runs claimed jobs under `worker`'s name. Every job it claims is held (named by the
    process's heartbeat) until its result is written or the runner stops; a job it lets go
    of unwritten (a task failed mid-batch) is then recovered by the sweep."""

    def __init__(self, ctx: WorkerContext, should_stop: Callable[[], bool] | None = None, worker: str | None = None):
        self.ctx = ctx
        self.settings = ctx.settings
        self.worker = worker
        self.should_stop = should_stop or SHUTTING_DOWN.is_set
        self._held: list[ClaimedJob] = []
        self.counts = {"claimed": 0, "succeeded": 0, "failed": 0, "skipped": 0, "batches": 0}
        self._workers = _pool("prepare", self.settings.prepare_threads)
        self._stager = _pool("stage", 1)  # prepares the next batch while the model runs
        self._writer = _pool("write", 1)  # writes the last batch's results while the model runs

    def run(self, claimed: list[ClaimedJob]) -> dict[str, int]:
        self._hold(claimed)
        try:
            for group in by_model(claimed):
                self._drain(group)
        finally:
            HELD.release(job.id for job in self._held)
            self._held = []
        return self.counts

    def _hold(self, jobs: list[ClaimedJob]) -> None:
        HELD.hold(job.id for job in jobs)
        self._held += jobs

    def _drain(self, group: list[ClaimedJob]) -> None:
        first = group[0]
        try:
            predictor = self.ctx.models.get(first.model_version_id, first.bundle_path, first.model_version)
            plugin = get_plugin(first.plugin)
        except Exception as exc:  # a broken bundle or plugin fails these jobs, not the worker
            log.exception("cannot load model %s", first.model_version)
            self._count([pipeline.fail(self.ctx, job, f"model {first.model_version} could not be loaded: {exc}") for job in group])
            return
        alone = any(job.attempts > 1 for job in group)
        batch = group if alone else self._fill(group)
        started = time.monotonic()
        deadline = started + self.settings.batch_drain_seconds
        staged: Future | None = self._stager.submit(self._prepare, plugin, predictor, batch)
        writing: Future | None = None
        batches = self.counts["batches"]
        try:
            while staged is not None:
                prepared = staged.result()
                staged = None
                if not alone and not self.should_stop() and time.monotonic() < deadline:
                    more = self._claim_more(first.model_version_id, self.settings.batch_max_size)
                    if more:
                        staged = self._stager.submit(self._prepare, plugin, predictor, more)
                decided = self._run_model(prepared)
                previous, writing = writing, None
                self._settle(previous)
                writing = self._writer.submit(contextvars.copy_context().run, self._write, prepared, decided)
        finally:
            # Wait for the last write even when the loop failed: a job is let go of only once
            # its result is stored (or its write has failed, which the sweep recovers).
            self._settle(writing)
        log.info("model %s: %d batch(es) in %.2fs", first.model_version, self.counts["batches"] - batches, time.monotonic() - started)

    def _fill(self, group: list[ClaimedJob]) -> list[ClaimedJob]:
        """Claim more waiting jobs of this model until full or the delay has passed."""
        batch = list(group)
        delay = self.settings.batch_max_delay_ms / 1000.0
        deadline = time.monotonic() + delay
        while len(batch) < self.settings.batch_max_size:
            batch += self._claim_more(group[0].model_version_id, self.settings.batch_max_size - len(batch))
            remaining = deadline - time.monotonic()
            if len(batch) >= self.settings.batch_max_size or remaining <= 0:
                break
            time.sleep(min(remaining, max(delay / 5, 0.002)))
        return batch

    def _claim_more(self, model_version_id, limit: int) -> list[ClaimedJob]:
        with self.ctx.db.session() as session:
            more = execution.claim_more(session, model_version_id, limit, self.worker)
        self._hold(more)
        self.counts["claimed"] += len(more)
        pipeline.observe_since_created(more, "queue_wait")
        return more

    def _prepare(self, plugin, predictor, jobs: list[ClaimedJob]) -> PreparedBatch:
        batch = PreparedBatch(plugin=plugin, predictor=predictor)
        results = self._workers.map(lambda job: pipeline.prepare_job(self.ctx, plugin, predictor, job), jobs)
        for job, result in zip(jobs, results):
            if isinstance(result, str):
                batch.statuses.append(result)
            else:
                batch.ready.append((job, *result))
        return batch

    def _run_model(self, batch: PreparedBatch) -> pipeline.DecidedBatch:
        """The model's part of a batch (predictions, decisions, explanations), on this thread."""
        self.counts["batches"] += 1 if batch.ready else 0
        with model_turn(batch.predictor):  # predictions and explanations, with no other thread's call between
            return pipeline.decide_batch(self.ctx, batch.plugin, pipeline.predict_batch(batch), batch)

    def _write(self, batch: PreparedBatch, decided: pipeline.DecidedBatch) -> list[str]:
        # One commit for the batch's results (each in its own savepoint), not one per job.
        statuses = list(batch.statuses) + pipeline.write_batch(self.ctx, decided)
        learning.shadow_later(self.ctx, batch.plugin, [job for job, _, _ in batch.ready])  # challengers, once written
        return statuses

    def _settle(self, writing: Future | None) -> None:
        """Count a write's statuses; its error (a database that went away) is the task's."""
        if writing is not None:
            self._count(writing.result())

    def _count(self, statuses: list[str]) -> None:
        for status in statuses:
            self.counts[status] += 1
