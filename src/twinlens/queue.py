"""Publish work by name, carrying only ids. Light on purpose: no torch, no task imports.

Two transports behind one interface:
- no broker (the embedded default): ids go to the in-process consumer that
  `twinlens serve` (or a test) installs with `set_local_consumer`;
- `TWINLENS_BROKER_URL` set: Celery messages sent by task *name*, so the API never
  imports the worker code that defines the tasks.

Callers publish only after their transaction commits (see db.session.after_commit); if a
publish is lost anyway, the worker's sweep re-publishes jobs still queued.

The outbox: a job's publish is recorded next to its message, in the broker's Redis (a
key per job that outlives any sane queue wait). A queued job without that record was
committed but never reached the broker (Redis was down, or the API died between its
commit and the publish), and the workers' sweep publishes it (`published_among`). A
Redis restarted empty loses the records with the messages, so its queued jobs are all
published again, which is what they need.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Protocol

log = logging.getLogger(__name__)

PREDICT_TASK = "twinlens.predict"
WEBHOOK_TASK = "twinlens.deliver_webhook"
TRAIN_TASK = "twinlens.train"
# Helpdesk connector steps (fetch a ticket, write back its decision) are outbound HTTP
# like webhooks, so they share the webhooks queue (services/connectors_intake.py).
CONNECTOR_TASK = "twinlens.connector_step"
# Bulk scoring batches run on the plugin's predict queue, a slice at a time (services/batches.py).
BATCH_TASK = "twinlens.score_batch"
# Training has its own queue (and its own workers), so hours of training never hold up
# predictions, and neither does a slow domain hold up another (one predict queue each).
TRAINING_QUEUE = "training"
WEBHOOK_QUEUE = "webhooks"
PUBLISHED_KEY = "twinlens:published:{job_id}"
# Longer than a job should ever wait in a queue; one that waits longer is published again,
# which costs a message that finds the job taken and does nothing.
PUBLISHED_RECORD_SECONDS = 3600
# The publisher gives up quickly when Redis is down: the job is durable in the database and
# the outbox publishes it once Redis is back, so a request must not hang on the broker.
PUBLISH_TIMEOUT_SECONDS = 5.0
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


class LocalConsumer(Protocol):
    def submit_predict(self, job_id: str, plugin: str) -> None: ...
    def submit_webhook(self, delivery_id: str, delay_seconds: float) -> None: ...
    def submit_training(self, run_id: str) -> None: ...
    def health(self) -> dict[str, Any]: ...


_lock = threading.Lock()
_local: LocalConsumer | None = None
_broker_url: str | None = None
_celery: Any = None
_redis: Any = None


def configure(broker_url: str | None) -> None:
    """Choose the transport for this process (called once at startup)."""
    global _broker_url, _celery
    with _lock:
        _broker_url = broker_url or None
        _celery = None
        _drop_redis_client()


def set_local_consumer(consumer: LocalConsumer | None) -> None:
    global _local
    with _lock:
        _local = consumer


def local_consumer() -> LocalConsumer | None:
    return _local


def uses_broker() -> bool:
    return _broker_url is not None


def publish_predict(job_id: uuid.UUID | str, plugin: str) -> None:
    """Ask a worker to run one queued job."""
    job_id = str(job_id)
    if _broker_url is not None:
        _celery_client().send_task(PREDICT_TASK, args=[[job_id]], queue=predict_queue(plugin),
                                   retry_policy=PUBLISH_RETRY_POLICY)
        _record_published([job_id])
        return
    consumer = _local
    if consumer is None:
        log.warning("no worker in this process; job %s stays queued until one sweeps it", job_id)
        return
    consumer.submit_predict(job_id, plugin)


def publish_webhook(delivery_id: uuid.UUID | str, delay_seconds: float = 0.0) -> None:
    """Ask a worker to attempt one webhook delivery after `delay_seconds`."""
    delivery_id = str(delivery_id)
    if _broker_url is not None:
        _celery_client().send_task(WEBHOOK_TASK, args=[delivery_id], countdown=max(0.0, delay_seconds), queue=WEBHOOK_QUEUE)
        return
    consumer = _local
    if consumer is None:
        log.warning("no worker in this process; delivery %s waits for a sweep", delivery_id)
        return
    consumer.submit_webhook(delivery_id, delay_seconds)


def publish_training(run_id: uuid.UUID | str) -> None:
    """Ask a training worker to run one queued training run."""
    run_id = str(run_id)
    if _broker_url is not None:
        _celery_client().send_task(TRAIN_TASK, args=[run_id], queue=TRAINING_QUEUE)
        return
    consumer = _local
    if consumer is None:
        log.warning("no worker in this process; training run %s stays queued until one sweeps it", run_id)
        return
    consumer.submit_training(run_id)


def publish_batch(batch_id: uuid.UUID | str, plugin: str) -> None:
    """Ask a worker to score (the next slice of) one bulk scoring batch."""
    batch_id = str(batch_id)
    if _broker_url is not None:
        _celery_client().send_task(BATCH_TASK, args=[batch_id], queue=predict_queue(plugin), retry_policy=PUBLISH_RETRY_POLICY)
        return
    submit = getattr(_local, "submit_batch", None)
    if submit is None:
        log.warning("no batch worker in this process; batch %s stays queued until one sweeps it", batch_id)
        return
    submit(batch_id)


def publish_connector_step(ticket_row_id: uuid.UUID | str, step: str) -> None:
    """Ask a worker to run one step ("fetch" or "write_back") of a helpdesk ticket."""
    row_id = str(ticket_row_id)
    if _broker_url is not None:
        _celery_client().send_task(CONNECTOR_TASK, args=[row_id, step], queue=WEBHOOK_QUEUE, retry_policy=PUBLISH_RETRY_POLICY)
        return
    submit = getattr(_local, "submit_connector_step", None)
    if submit is None:
        log.warning("no connector worker in this process; ticket %s waits for a sweep", row_id)
        return
    submit(row_id, step)


def publish_search_task(task: str, argument: str, plugin: str) -> None:
    """Ask a worker of the plugin's predict queue (it has the plugin's models loaded) for
    a short search task: embed a query, or build search indexes (services/search.py)."""
    if _broker_url is not None:
        _celery_client().send_task(task, args=[argument], queue=predict_queue(plugin), retry_policy=PUBLISH_RETRY_POLICY)
        return
    submit = getattr(_local, "submit_search_task", None)
    if submit is None:
        log.warning("no search worker in this process; %s %s is not run", task, argument)
        return
    submit(task, argument)


def predict_queue(plugin: str) -> str:
    """One queue per plugin, so a worker fleet can be sized (or given GPUs) per domain."""
    return f"predict.{plugin}"


def _record_published(job_ids: list[str]) -> None:
    """After the message is sent: a failure here only costs a duplicate message later."""
    try:
        pipe = _redis_client().pipeline(transaction=False)
        for job_id in job_ids:
            pipe.set(PUBLISHED_KEY.format(job_id=job_id), "1", ex=PUBLISHED_RECORD_SECONDS)
        pipe.execute()
    except Exception:
        log.warning("could not record the publish of %s; the outbox will publish it again", job_ids, exc_info=True)


def published_among(job_ids: list[str]) -> set[str]:
    """The ids whose publish the broker still remembers (all of them without a broker:
    the in-process queue has no outbox). Raises if Redis cannot be reached."""
    if _broker_url is None or not job_ids:
        return set(job_ids)
    found = _redis_client().mget([PUBLISHED_KEY.format(job_id=job_id) for job_id in job_ids])
    return {job_id for job_id, value in zip(job_ids, found) if value is not None}


def forget_published(job_ids: list[str]) -> None:
    """Hand jobs back to the outbox: their messages were consumed by a task that could not
    reach the database, so the sweep publishes them again once it answers."""
    if _broker_url is None or not job_ids:
        return
    _redis_client().delete(*[PUBLISHED_KEY.format(job_id=job_id) for job_id in job_ids])


def broker_ping(timeout: float = 2.0) -> None:
    """Raise if the broker cannot be reached (used by /readyz)."""
    if _broker_url is None:
        return
    import redis

    client = redis.Redis.from_url(_broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def _celery_client() -> Any:
    """A producer-only Celery app: it defines no tasks and imports none."""
    global _celery
    with _lock:
        if _celery is None:
            from celery import Celery

            _celery = Celery("twinlens-publisher", broker=_broker_url)
            _celery.conf.broker_connection_timeout = PUBLISH_TIMEOUT_SECONDS
            _celery.conf.broker_transport_options = {
                "socket_connect_timeout": PUBLISH_TIMEOUT_SECONDS, "socket_timeout": PUBLISH_TIMEOUT_SECONDS,
            }
        return _celery


def _redis_client() -> Any:
    """One connection pool per process for the outbox records."""
    global _redis
    with _lock:
        if _redis is None:
            import redis

            _redis = redis.Redis.from_url(_broker_url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS,
                                          socket_timeout=PUBLISH_TIMEOUT_SECONDS)
        return _redis


def _drop_redis_client() -> None:
    global _redis
    if _redis is not None:
        _redis.close()
    _redis = None
