from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from twinlens.db.models import TrainingRun
from twinlens.db.repositories.tenant_owned import TenantOwnedRepository

OPEN_STATUSES = ("queued", "running")


class TrainingRunRepository(TenantOwnedRepository[TrainingRun]):
    entity = TrainingRun

    # -- reads --------------------------------------------------------------------------
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
