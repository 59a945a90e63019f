"""Helpdesk connector steps as worker tasks, embedded or under Celery (the webhooks queue).

Each step owns its sessions (services/connectors_intake.py keeps every transaction short
and none open across a call to the helpdesk) and is idempotent by its row's status: a
step delivered twice finds its row moved on and does nothing.
"""

from __future__ import annotations

import logging
import uuid

from celery import Celery

from twinlens.queue import CONNECTOR_TASK
from twinlens.services import connectors_intake
from twinlens.worker.context import WorkerContext, get_context

log = logging.getLogger(__name__)


def run_connector_step(row_id: str | uuid.UUID, step: str, context: WorkerContext | None = None) -> str | None:
    ctx = context or get_context()
    status = connectors_intake.run_step(ctx.db, ctx.blobs, ctx.settings, row_id, step)
    log.info("connector ticket %s, step %s: %s", row_id, step, status or "not ours (already taken or done)")
    return status


def sweep_connectors(context: WorkerContext | None = None) -> dict[str, int]:
    ctx = context or get_context()
    with ctx.db.session() as session:
        return connectors_intake.sweep(session, ctx.settings)


def register(app: Celery) -> None:
    """The Celery task (celery_app.py calls this)."""

    @app.task(name=CONNECTOR_TASK, shared=False)
    def connector_step(row_id: str, step: str) -> str | None:
        return run_connector_step(row_id, step)
