"""The production worker fleet: Celery on Redis running the same task code as the
embedded worker.

Delivery guarantees come from the database, not the broker: messages carry job ids only,
are acknowledged late (after the task), are redelivered if a worker dies holding them
(reject on worker lost), and each worker takes one message at a time (prefetch 1). A task
that is redelivered finds its job already finished and does nothing. A sweeper thread in
every worker re-queues the jobs of workers whose heartbeat lapsed (heartbeat.py), publishes
jobs the broker never got or lost (the outbox: a Redis that was down or restarted empty);
a Redis lock keeps one sweep per interval fleet-wide.

Each worker serves its Prometheus metrics (batch sizes, stage timings, jobs finished) on
`worker_metrics_port` (metrics_server.py) from the process that runs the tasks: the solo
pool (the default) and the threads pool. A prefork pool's children keep their own counts,
which that port does not see: run solo workers where their metrics matter.

Nothing here touches CUDA: models load lazily inside the process that runs the task, so a
prefork pool never forks a CUDA context. On a GPU run one solo-pool worker per GPU.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from twinlens.queue import BATCH_TASK, PREDICT_TASK, TRAIN_TASK, WEBHOOK_TASK
from twinlens.settings import Settings, get_settings
from twinlens.worker import batch_tasks, heartbeat, tasks
from twinlens.worker import connector_tasks
from twinlens.services.search import BUILD_INDEXES_TASK, EMBED_QUERY_TASK
from twinlens.worker import search_tasks
from twinlens.worker.batching import SHUTTING_DOWN
from twinlens.worker.context import set_context
from twinlens.worker.metrics_server import serve_metrics

log = logging.getLogger(__name__)

SWEEP_LOCK = "twinlens:sweep-lock"
PURGE_EVERY = 3600.0


def make_celery(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ValueError("TWINLENS_BROKER_URL is not set: without a broker jobs run in `twinlens serve` itself")
    app = Celery("twinlens", broker=settings.broker_url)
    limit = settings.task_time_limit_seconds
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=limit,
        task_soft_time_limit=limit * 0.9,
        # The hard limit stays below the visibility timeout (Settings checks it), so Redis
        # never hands a message to a second worker while the first is still within time.
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    _register_tasks(app, settings)
    return app


def _register_tasks(app: Celery, settings: Settings) -> None:
    # shared=False: a task is this app's alone. Celery's default shares a task with every
    # app made later, so a second app in one process (other settings) got the first one's
    # time limits.
    @app.task(name=PREDICT_TASK, shared=False)
    def predict(job_ids: list[str]) -> dict[str, int]:
        return tasks.run_predict_jobs(job_ids)

    # A bulk batch, one slice (at most half the task limit) per message: see batch_tasks.py.
    @app.task(name=BATCH_TASK, shared=False)
    def score_batch(batch_id: str) -> dict:
        return batch_tasks.run_batch(batch_id)

    # Similar-case search on the predict queues: embed a query, build a FAISS index (search_tasks.py).
    @app.task(name=EMBED_QUERY_TASK, shared=False)
    def embed_query(query_id: str) -> str | None:
        return search_tasks.embed_query(query_id)

    @app.task(name=BUILD_INDEXES_TASK, shared=False)
    def build_search_index(scope_key: str) -> int:
        return search_tasks.build_scope_index(scope_key)

    @app.task(name=WEBHOOK_TASK, shared=False)
    def deliver_webhook(delivery_id: str) -> str | None:
        return tasks.deliver_webhook(delivery_id)

    connector_tasks.register(app)  # helpdesk tickets: fetch and write back (docs/connectors/)

    # Training takes hours, not seconds: its own limits (below the visibility timeout too).
    # The soft limit raises inside the run, which then records that it ran out of time.
    training_limit = settings.training_time_limit_seconds
    @app.task(name=TRAIN_TASK, shared=False, time_limit=training_limit, soft_time_limit=training_limit * 0.95)
    def train(run_id: str) -> str | None:
        return tasks.run_training(run_id)


# -- process lifecycle ------------------------------------------------------------------


@signals.celeryd_init.connect
def _name_the_worker(sender: str | None = None, **_: Any) -> None:
    if sender:
        heartbeat.set_node_name(sender)


@signals.worker_process_init.connect
def _fresh_child_state(**_: Any) -> None:
    # A forked pool process must not reuse the parent's database connections.
    set_context(None)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    heartbeat.stop_heartbeat()


@signals.worker_shutting_down.connect
def _stop_claiming(**_: Any) -> None:
    # Warm shutdown: the running task finishes the batches it holds and claims no more.
    SHUTTING_DOWN.set()


@signals.worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    settings = get_settings()
    Sweeper(settings).start()
    serve_metrics(settings)


class Sweeper:
    """Every `sweep_interval_seconds`, one worker of the fleet recovers lost work."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._stop = threading.Event()
        self._last_purge = 0.0
        self._heartbeats = heartbeat.HeartbeatReader(settings)

    def start(self) -> "Sweeper":
        threading.Thread(target=self._loop, name="twinlens-sweeper", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        import time

        while not self._stop.wait(self.settings.sweep_interval_seconds):
            if SHUTTING_DOWN.is_set():
                return
            try:
                if self._acquire_turn():
                    swept = tasks.sweep(living=self._heartbeats)
                    log.log(logging.INFO if any(swept.values()) else logging.DEBUG, "sweep: %s", swept)
                    if time.monotonic() - self._last_purge > PURGE_EVERY:
                        self._last_purge = time.monotonic()
                        tasks.purge_expired_inputs()
            except Exception:  # the broker or database may be restarting; try next round
                log.exception("sweep failed")

    def _acquire_turn(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.settings.broker_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            ttl = max(1, int(self.settings.sweep_interval_seconds * 0.8))
            return bool(client.set(SWEEP_LOCK, "1", nx=True, ex=ttl))
        finally:
            client.close()
