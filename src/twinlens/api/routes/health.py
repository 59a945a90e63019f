"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from twinlens import queue
from twinlens.api.deps import DatabaseDep
from twinlens.api.problems import problem_response, problem_responses
from twinlens.db.repositories import JobRepository, ModelRepository
from twinlens.db.session import Database
from twinlens.services.metrics import QUEUE_DEPTH
from twinlens.services.views import Health

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health, summary="The process is up")
def livez() -> Health:
    return Health(status="ok", time=datetime.now(timezone.utc))


@router.get(
    "/readyz", response_model=Health, summary="Database and broker reachable, a model ready",
    responses=problem_responses(503),
)
async def readyz(db: DatabaseDep) -> Any:
    checks = await run_in_threadpool(_readiness, db)
    if all(check["ok"] for check in checks.values()):
        return Health(status="ready", checks=checks, time=datetime.now(timezone.utc))
    failing = ", ".join(name for name, check in checks.items() if not check["ok"])
    return problem_response(503, f"not ready: {failing}", title="Not ready", extensions={"checks": checks})


def _readiness(db: Database) -> dict[str, dict[str, Any]]:
    return {"database": _check_database(db), "worker": _check_worker(), "models": _check_models(db)}


def _check_database(db: Database) -> dict[str, Any]:
    try:
        db.ping()
    except Exception as exc:
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
    return {"ok": True, "backend": db.dialect}


def _check_worker() -> dict[str, Any]:
    if queue.uses_broker():
        try:
            queue.broker_ping()
        except Exception as exc:
            return {"ok": False, "mode": "broker", "error": f"{exc.__class__.__name__}: {exc}"}
        return {"ok": True, "mode": "broker"}
    consumer = queue.local_consumer()
    if consumer is None:
        return {"ok": False, "mode": "in-process", "error": "no worker runs in this process"}
    health = consumer.health()
    return {"ok": bool(health.get("alive")), **health}


def _check_models(db: Database) -> dict[str, Any]:
    try:
        with db.session() as session:
            active = [m.version for m in ModelRepository(session).all_active()]
    except Exception as exc:
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
    loaded = (queue.local_consumer().health().get("loaded_models", []) if queue.local_consumer() else None)
    if not active:
        return {"ok": False, "error": "no active model; register one with POST /v1/models", "active": []}
    if loaded is not None and not loaded:
        return {"ok": False, "error": "the worker has not loaded a model yet", "active": active, "loaded": []}
    return {"ok": True, "active": active, **({"loaded": loaded} if loaded is not None else {})}


@router.get(
    "/metrics", summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}},
)
async def metrics(db: DatabaseDep) -> Response:
    await run_in_threadpool(_refresh_job_gauges, db)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _refresh_job_gauges(db: Database) -> None:
    try:
        with db.session() as session:
            counts = JobRepository(session).count_by_status()
    except Exception:
        return  # metrics must answer even when the database does not
    for status in ("queued", "running", "succeeded", "failed", "canceled"):
        QUEUE_DEPTH.labels(status).set(counts.get(status, 0))
