"""Readiness and the job gauges: what `/readyz` and `/metrics` report.

Ready means a request would be served end to end: the database answers, something will
run the jobs (the broker, or the worker threads in this process), and a model is active
(and, for an in-process worker, loaded). Each check reports its own error instead of
raising, so one failing part never hides the state of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinlens import queue
from twinlens.db.repositories import JobRepository
from twinlens.db.session import Database
from twinlens.services import models
from twinlens.services.metrics import QUEUE_DEPTH

Check = dict[str, Any]
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, Check]

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]

    @property
    def ready(self) -> bool:
        return not self.failing


def readiness(db: Database) -> Readiness:
    """Blocking (database and broker round trips): run it in a worker thread."""
    return Readiness({"database": _check_database(db), "worker": _check_worker(), "models": _check_models(db)})


def _check_database(db: Database) -> Check:
    try:
        db.ping()
    except Exception as exc:
        return {"ok": False, "error": _describe(exc)}
    return {"ok": True, "backend": db.dialect}


def _check_worker() -> Check:
    if queue.uses_broker():
        try:
            queue.broker_ping()
        except Exception as exc:
            return {"ok": False, "mode": "broker", "error": _describe(exc)}
        return {"ok": True, "mode": "broker"}
    consumer = queue.local_consumer()
    if consumer is None:
        return {"ok": False, "mode": "in-process", "error": "no worker runs in this process"}
    health = consumer.health()
    return {"ok": bool(health.get("alive")), **health}


def _check_models(db: Database) -> Check:
    try:
        with db.session() as session:
            active = [model.version for model in models.active_models(session)]
    except Exception as exc:
        return {"ok": False, "error": _describe(exc)}
    consumer = queue.local_consumer()
    loaded = consumer.health().get("loaded_models", []) if consumer else None  # None: a broker's workers load them
    if not active:
        return {"ok": False, "error": "no active model; register one with POST /v1/models", "active": []}
    if loaded is not None and not loaded:
        return {"ok": False, "error": "the worker has not loaded a model yet", "active": active, "loaded": []}
    return {"ok": True, "active": active, **({"loaded": loaded} if loaded is not None else {})}


def _describe(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {exc}"


def refresh_job_gauges(db: Database) -> None:
    """Set the jobs-by-status gauges from the database, read at scrape time."""
    try:
        with db.session() as session:
            counts = JobRepository(session).count_by_status()
    except Exception:
        return  # metrics must answer even when the database does not
    for status in JOB_STATUSES:
        QUEUE_DEPTH.labels(status).set(counts.get(status, 0))
