"""The embedded worker: the same task code on threads inside `twinlens serve`.

Used when no broker is configured. One thread runs predictions (draining whatever is
waiting into one batch), one schedules webhook attempts and periodic sweeps, a small
pool sends webhooks so a slow receiver never delays predictions, and one thread trains,
one run at a time, so hours of training never hold up a prediction.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue as stdlib_queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twinlens import queue
from twinlens.services.models import active_models
from twinlens.worker import batch_tasks, tasks
from twinlens.worker import connector_tasks
from twinlens.worker import search_tasks
from twinlens.worker.context import WorkerContext

log = logging.getLogger(__name__)
PRELOAD_INTERVAL = 5.0  # seconds between looks for newly activated models


class InProcessWorker:
    def __init__(
        self,
        context: WorkerContext,
        *,
        sweep_interval: float = 30.0,
        purge_interval: float = 3600.0,
        webhook_threads: int = 4,
    ):
        self.context = context
        self.sweep_interval = sweep_interval
        self.purge_interval = purge_interval
        self._jobs: stdlib_queue.Queue[str] = stdlib_queue.Queue()
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._timers: list[tuple[float, int, str]] = []
        self._timer_seq = itertools.count()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._senders = ThreadPoolExecutor(max_workers=webhook_threads, thread_name_prefix="twinlens-webhook")
        self._training: stdlib_queue.Queue[str] = stdlib_queue.Queue()
        self._training_pending: set[str] = set()
        self._batches: stdlib_queue.Queue[str] = stdlib_queue.Queue()
        self._batches_pending: set[str] = set()
        # Search tasks (embed a query, build an index): short, one at a time, never behind predictions.
        self._search = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twinlens-search")
        self._threads: list[threading.Thread] = []
        self.batches_run = 0

    # -- the queue.LocalConsumer interface ------------------------------------------------
    def submit_predict(self, job_id: str, plugin: str) -> None:
        with self._pending_lock:
            if job_id in self._pending:  # a sweep re-publishing a job already waiting
                return
            self._pending.add(job_id)
        self._jobs.put(job_id)

    def submit_webhook(self, delivery_id: str, delay_seconds: float) -> None:
        with self._wake:
            heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay_seconds), next(self._timer_seq), delivery_id))
            self._wake.notify()

    def submit_connector_step(self, ticket_row_id: str, step: str) -> None:
        # Outbound HTTP like a webhook: on the senders' pool, never the prediction thread.
        self._senders.submit(self._connector_step, ticket_row_id, step)

    def submit_training(self, run_id: str) -> None:
        with self._pending_lock:
            if run_id in self._training_pending:  # a sweep re-publishing a run already waiting
                return
            self._training_pending.add(run_id)
        self._training.put(run_id)

    def submit_batch(self, batch_id: str) -> None:
        with self._pending_lock:
            if batch_id in self._batches_pending:  # a sweep re-publishing a batch already waiting
                return
            self._batches_pending.add(batch_id)
        self._batches.put(batch_id)

    def submit_search_task(self, task: str, argument: str) -> None:
        self._search.submit(self._run_search_task, task, argument)

    def _run_search_task(self, task: str, argument: str) -> None:
        try:
            search_tasks.run_search_task(task, argument, self.context)
        except Exception:
            log.exception("search task %s %s failed", task, argument)

    def health(self) -> dict[str, Any]:
        return {
            "mode": "in-process",
            "alive": bool(self._threads) and all(thread.is_alive() for thread in self._threads),
            "loaded_models": self.context.models.loaded(),
            "waiting_jobs": self._jobs.qsize(),
            "waiting_training_runs": self._training.qsize(),
        }

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, *, preload: bool = True) -> "InProcessWorker":
        queue.set_local_consumer(self)
        self._threads = [
            threading.Thread(target=self._predict_loop, args=(preload,), name="twinlens-predict", daemon=True),
            threading.Thread(target=self._schedule_loop, name="twinlens-scheduler", daemon=True),
            threading.Thread(target=self._training_loop, name="twinlens-training", daemon=True),
            threading.Thread(target=self._batch_loop, name="twinlens-batches", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if queue.local_consumer() is self:
            queue.set_local_consumer(None)
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._senders.shutdown(wait=True, cancel_futures=True)
        self._search.shutdown(wait=True, cancel_futures=True)

    # -- predictions ------------------------------------------------------------------------
    def _predict_loop(self, preload: bool) -> None:
        next_preload = time.monotonic() if preload else float("inf")
        while not self._stop.is_set():
            if time.monotonic() >= next_preload:
                self._preload_models()
                next_preload = time.monotonic() + PRELOAD_INTERVAL
            batch = self._next_batch()
            if not batch:
                continue
            try:
                tasks.run_predict_jobs(batch, self.context)
            except Exception:  # the jobs stay queued/running; the sweep recovers them
                log.exception("prediction batch failed")
            self.batches_run += 1

    def _next_batch(self) -> list[str]:
        try:
            first = self._jobs.get(timeout=0.2)
        except stdlib_queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.context.settings.batch_max_size:
            try:
                batch.append(self._jobs.get_nowait())
            except stdlib_queue.Empty:
                break
        with self._pending_lock:
            self._pending.difference_update(batch)
        return batch

    def _preload_models(self) -> None:
        """Load active models before their first job (also ones activated since start),
        so the first job is not slow and /readyz can say a model is loaded."""
        try:
            with self.context.db.session() as session:
                active = [(m.id, m.bundle_path, m.version) for m in active_models(session)]
            for model_id, path, version in active:
                self.context.models.preload(model_id, path, version)
        except Exception:
            log.exception("preloading models failed; they load on first use")

    # -- training -----------------------------------------------------------------------------
    def _training_loop(self) -> None:
        while not self._stop.is_set():
            try:
                run_id = self._training.get(timeout=0.2)
            except stdlib_queue.Empty:
                continue
            with self._pending_lock:
                self._training_pending.discard(run_id)
            try:
                tasks.run_training(run_id, self.context)
            except Exception:  # the run stays running; the sweep fails it once it is overdue
                log.exception("training run %s failed unexpectedly", run_id)

    # -- bulk batches: their own thread, so a big file never holds up single jobs ----------------
    def _batch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch_id = self._batches.get(timeout=0.2)
            except stdlib_queue.Empty:
                continue
            with self._pending_lock:
                self._batches_pending.discard(batch_id)
            try:
                batch_tasks.run_batch(batch_id, self.context, should_stop=self._stop.is_set)
            except Exception:  # the batch stays running; the sweep queues it again once its heartbeat is stale
                log.exception("batch %s failed unexpectedly", batch_id)

    # -- webhooks and sweeps --------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        self._run_periodic("sweep", lambda: tasks.sweep(self.context, queued_older_than=0.0))
        next_sweep = time.monotonic() + self.sweep_interval
        next_purge = time.monotonic()
        while not self._stop.is_set():
            for delivery_id in self._due_timers():
                self._senders.submit(self._send, delivery_id)
            now = time.monotonic()
            if now >= next_sweep:
                self._run_periodic("sweep", lambda: tasks.sweep(self.context))
                next_sweep = now + self.sweep_interval
            if now >= next_purge:
                self._run_periodic("purge", lambda: tasks.purge_expired_inputs(self.context))
                next_purge = now + self.purge_interval
            self._sleep_until_next_timer(min(next_sweep, next_purge))

    def _due_timers(self) -> list[str]:
        due = []
        with self._wake:
            while self._timers and self._timers[0][0] <= time.monotonic():
                due.append(heapq.heappop(self._timers)[2])
        return due

    def _sleep_until_next_timer(self, periodic_due: float) -> None:
        with self._wake:
            wake_at = min([periodic_due, *(t[0] for t in self._timers[:1])])
            self._wake.wait(timeout=max(0.01, min(1.0, wake_at - time.monotonic())))

    def _connector_step(self, ticket_row_id: str, step: str) -> None:
        try:
            connector_tasks.run_connector_step(ticket_row_id, step, self.context)
        except Exception:  # the row stays at its step; the sweep takes it up again
            log.exception("connector ticket %s, step %s, failed unexpectedly", ticket_row_id, step)

    def _send(self, delivery_id: str) -> None:
        try:
            tasks.deliver_webhook(delivery_id, self.context)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", delivery_id)

    @staticmethod
    def _run_periodic(name: str, action) -> None:
        try:
            action()
        except Exception:
            log.exception("periodic %s failed", name)
