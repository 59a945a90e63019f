"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from twinlens.api.deps import DatabaseDep
from twinlens.api.problems import problem_response, problem_responses
from twinlens.services import health
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
    readiness = await run_in_threadpool(health.readiness, db)
    if readiness.ready:
        return Health(status="ready", checks=readiness.checks, time=datetime.now(timezone.utc))
    return problem_response(503, f"not ready: {', '.join(readiness.failing)}", title="Not ready",
                            extensions={"checks": readiness.checks})


@router.get(
    "/metrics", summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}},
)
async def metrics(db: DatabaseDep) -> Response:
    await run_in_threadpool(health.refresh_job_gauges, db)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
