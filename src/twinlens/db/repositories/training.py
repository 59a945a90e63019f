from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from twinlens.db.models import TrainingRun

OPEN_STATUSES = ("queued", "running")


@dataclass
class TrainingRunPage:
    runs: list[TrainingRun]
    # (created_at, id) of the last run when more may follow.
    last_key: tuple[datetime, uuid.UUID] | None


class TrainingRunRepository:
    def __init__(self, session: Session):
        self.session = session

    # -- reads --------------------------------------------------------------------------
    def get(self, run_id: uuid.UUID) -> TrainingRun | None:
        return self.session.get(TrainingRun, run_id)

    def get_for_tenant(self, run_id: uuid.UUID, tenant_id: uuid.UUID) -> TrainingRun | None:
        query = select(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.tenant_id == tenant_id)
        return self.session.scalar(query)

    def page(
        self,
        tenant_id: uuid.UUID,
        *,
        limit: int,
        plugin: str | None = None,
        status: str | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> TrainingRunPage:
        """Newest first, keyset-paginated on (created_at, id) like the jobs list."""
        query = select(TrainingRun).where(TrainingRun.tenant_id == tenant_id)
        if plugin:
            query = query.where(TrainingRun.plugin == plugin)
        if status:
            query = query.where(TrainingRun.status == status)
        if after is not None:
            created, last_id = after
            query = query.where(or_(TrainingRun.created_at < created,
                                    and_(TrainingRun.created_at == created, TrainingRun.id < last_id)))
        order = (TrainingRun.created_at.desc(), TrainingRun.id.desc())
        rows = list(self.session.scalars(query.order_by(*order).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return TrainingRunPage(rows, (rows[-1].created_at, rows[-1].id) if more and rows else None)

    def open_runs(self) -> list[TrainingRun]:
        """Queued and running runs (few at any time: training is admin-initiated)."""
        return list(self.session.scalars(select(TrainingRun).where(TrainingRun.status.in_(OPEN_STATUSES))))

    def queued_ids(self, *, created_before: datetime, limit: int = 100) -> list[uuid.UUID]:
        query = select(TrainingRun.id).where(TrainingRun.status == "queued", TrainingRun.created_at < created_before)
        return list(self.session.scalars(query.order_by(TrainingRun.created_at).limit(limit)))

    def running_ids_since_before(self, started_before: datetime, limit: int = 100) -> list[uuid.UUID]:
        query = select(TrainingRun.id).where(TrainingRun.status == "running", TrainingRun.started_at < started_before)
        return list(self.session.scalars(query.limit(limit)))

    # -- writes -------------------------------------------------------------------------
    def add(self, run: TrainingRun) -> TrainingRun:
        self.session.add(run)
        self.session.flush()
        return run

    def claim(self, run_id: uuid.UUID, now: datetime) -> int | None:
        """queued -> running (attempts + 1); the new attempt number, or None when the run
        is not queued (another worker has it, or it finished)."""
        result = self.session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == "queued")
            .values(status="running", attempts=TrainingRun.attempts + 1, started_at=now)
            .returning(TrainingRun.attempts)
            .execution_options(synchronize_session=False)
        )
        row = result.first()
        return None if row is None else row[0]

    def finish(
        self,
        run_id: uuid.UUID,
        attempt: int | None,
        status: str,
        now: datetime,
        **values: Any,
    ) -> bool:
        """running -> succeeded/failed, only for the attempt that holds the run (None: any
        attempt, for the sweeper); False when it no longer does."""
        condition = [TrainingRun.id == run_id, TrainingRun.status == "running"]
        if attempt is not None:
            condition.append(TrainingRun.attempts == attempt)
        result = self.session.execute(
            update(TrainingRun)
            .where(*condition)
            .values(status=status, finished_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def link_model(self, run_id: uuid.UUID, model_version_id: uuid.UUID) -> None:
        self.session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id)
            .values(model_version_id=model_version_id)
            .execution_options(synchronize_session=False)
        )
