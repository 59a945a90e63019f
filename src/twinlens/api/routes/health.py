"""Liveness, readiness and Prometheus metrics.

`/livez` is open to anyone (a load balancer's probe). `/metrics` and the details of
`/readyz` (model versions, worker state, database backend, error texts) are for
operators: they need `Authorization: Bearer <TWINLENS_METRICS_TOKEN>` or an admin API
key. Anyone else gets 401 from `/metrics` and only ready / not ready from `/readyz`.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from twinlens.api.deps import DatabaseDep, SettingsDep
from twinlens.api.problems import problem_response, problem_responses
from twinlens.db.session import Database
from twinlens.services import health, keys
from twinlens.services.errors import Unauthorized
from twinlens.services.views import Health
from twinlens.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

_operator_bearer = HTTPBearer(
    auto_error=False, scheme_name="OperatorToken",
    description="TWINLENS_METRICS_TOKEN, or an admin API key: `Authorization: Bearer ...`",
)
OperatorCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_bearer)]


@router.get("/livez", response_model=Health, summary="The process is up")
def livez() -> Health:
    return Health(status="ok", time=datetime.now(timezone.utc))


@router.get(
    "/readyz", response_model=Health, summary="Database and broker reachable, a model ready (details for operators)",
    responses=problem_responses(503),
    # The token is optional here (OpenAPI: the operator token, or no security at all):
    # without it the answer is only ready or not.
    openapi_extra={"security": [{}]},
)
async def readyz(db: DatabaseDep, settings: SettingsDep, credentials: OperatorCredentials) -> Any:
    readiness = await run_in_threadpool(health.readiness, db)
    operator = await run_in_threadpool(_is_operator, credentials, settings, db)
    now = datetime.now(timezone.utc)
    if readiness.ready:
        return Health(status="ready", checks=readiness.checks if operator else {}, time=now)
    if operator:
        return problem_response(503, f"not ready: {', '.join(readiness.failing)}", extensions={"checks": readiness.checks})
    return problem_response(503, "not ready (an operator token shows which check fails)")


@router.get(
    "/metrics", summary="Prometheus metrics (operators)",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        **problem_responses(401),
    },
)
async def metrics(db: DatabaseDep, settings: SettingsDep, credentials: OperatorCredentials) -> Response:
    if not await run_in_threadpool(_is_operator, credentials, settings, db):
        raise Unauthorized("send TWINLENS_METRICS_TOKEN or an admin API key as `Authorization: Bearer <token>`")
    await run_in_threadpool(health.refresh_job_gauges, db)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _is_operator(credentials: HTTPAuthorizationCredentials | None, settings: Settings, db: Database) -> bool:
    """The metrics token (no database needed: a scrape must work while the database is
    down), else an admin API key; anything failing on the way means no."""
    if credentials is None:
        return False
    presented = credentials.credentials
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if token and secrets.compare_digest(presented.encode(), token.encode()):
        return True
    try:
        with db.session() as session:
            return keys.authenticate(session, presented).is_admin
    except Unauthorized:
        return False
    except Exception as exc:  # the database being down must not make readiness a 500
        log.warning("could not check an operator's key: %s: %s", exc.__class__.__name__, exc)
        return False
