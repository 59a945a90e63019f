"""Queries behind bulk scoring batches: the batch row (its state machine, its counts) and
its lines (inputs in, answers out, a page at a time)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from twinlens.db.batch_tables import FINISHED_BATCH_STATUSES, Batch, BatchRow
from twinlens.db.repositories.tenant_owned import TenantOwnedRepository


class BatchRepository(TenantOwnedRepository[Batch]):
    entity = Batch

    # -- upload ---------------------------------------------------------------------------
    def add(self, batch: Batch, rows: Sequence[dict[str, Any]]) -> Batch:
        """The batch and all its lines, in one executemany (5,000 lines are one round trip
        on PostgreSQL, not 5,000)."""
        self.session.add(batch)
        self.session.flush()
        if rows:
            self.session.execute(insert(BatchRow), [{**row, "batch_id": batch.id} for row in rows])
        return batch

    # -- the worker's state changes -------------------------------------------------------
    def claim(self, batch_id: uuid.UUID, now: datetime, token: str) -> bool:
        """queued -> running under `token` (the worker and a fresh id: only this claim may
        release or finish it); False when another worker has it or it is no longer queued."""
        result = self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == "queued")
            .values(status="running", started_at=func.coalesce(Batch.started_at, now), heartbeat_at=now, claimed_by=token)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def held_by(self, batch_id: uuid.UUID, token: str) -> bool:
        """Whether the batch is still running under this claim (not canceled, deleted, or
        queued again and taken by another worker after this one's heartbeat lapsed)."""
        query = select(Batch.id).where(Batch.id == batch_id, Batch.status == "running", Batch.claimed_by == token)
        return self.session.scalar(query) is not None

    def queued_rows(self, batch_id: uuid.UUID, after_line: int, limit: int) -> list[tuple[int, str | None, dict[str, Any]]]:
        """(line, row id, inputs) of the next queued lines, in file order."""
        query = (
            select(BatchRow.line, BatchRow.row_ref, BatchRow.inputs)
            .where(BatchRow.batch_id == batch_id, BatchRow.status == "queued", BatchRow.line > after_line)
            .order_by(BatchRow.line)
            .limit(limit)
        )
        return [(row.line, row.row_ref, row.inputs or {}) for row in self.session.execute(query)]

    def write_answers(self, batch_id: uuid.UUID, answers: Sequence[dict[str, Any]]) -> None:
        """Each answer is {line, status, output, error}; one executemany for the micro-batch.
        Only lines still queued are written (a second worker after a lapsed heartbeat
        writes nothing twice), and their inputs go: the answer is what is kept."""
        if not answers:
            return
        self.session.execute(
            update(BatchRow).where(BatchRow.status == "queued").execution_options(synchronize_session=None),
            [{"batch_id": batch_id, "line": a["line"], "status": a["status"], "output": a.get("output"),
              "error": a.get("error"), "inputs": None} for a in answers],
        )

    def refresh_counts(self, batch_id: uuid.UUID, now: datetime) -> None:
        """Counts from the lines themselves (so they are right whoever wrote them), and the
        heartbeat of the running claim."""
        counted = {status: count for status, count in self.session.execute(
            select(BatchRow.status, func.count()).where(BatchRow.batch_id == batch_id).group_by(BatchRow.status))}
        self.session.execute(
            update(Batch).where(Batch.id == batch_id)
            .values(rows_succeeded=counted.get("succeeded", 0), rows_failed=counted.get("failed", 0), heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )

    def queued_left(self, batch_id: uuid.UUID) -> bool:
        query = select(BatchRow.line).where(BatchRow.batch_id == batch_id, BatchRow.status == "queued").limit(1)
        return self.session.scalar(query) is not None

    def finish(self, batch_id: uuid.UUID, token: str, status: str, now: datetime, error: dict[str, Any] | None = None) -> bool:
        result = self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == "running", Batch.claimed_by == token)
            .values(status=status, finished_at=now, error=error, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def release(self, batch_id: uuid.UUID, token: str) -> bool:
        """running -> queued at the end of a worker's slice, for the next task to go on."""
        result = self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == "running", Batch.claimed_by == token)
            .values(status="queued", claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def cancel(self, batch_id: uuid.UUID, now: datetime) -> bool:
        result = self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status.in_(("queued", "running")))
            .values(status="canceled", finished_at=now, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    # -- recovery -------------------------------------------------------------------------
    def stale_running(self, heartbeat_before: datetime, limit: int = 100) -> list[tuple[uuid.UUID, str]]:
        query = (select(Batch.id, Batch.plugin)
                 .where(Batch.status == "running", Batch.heartbeat_at < heartbeat_before).limit(limit))
        return [(row.id, row.plugin) for row in self.session.execute(query)]

    def requeue_stale(self, batch_id: uuid.UUID, heartbeat_before: datetime) -> bool:
        result = self.session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == "running", Batch.heartbeat_at < heartbeat_before)
            .values(status="queued", claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def queued_before(self, created_before: datetime, limit: int = 100) -> list[tuple[uuid.UUID, str]]:
        query = (select(Batch.id, Batch.plugin)
                 .where(Batch.status == "queued", Batch.created_at < created_before).order_by(Batch.created_at).limit(limit))
        return [(row.id, row.plugin) for row in self.session.execute(query)]

    # -- reading answers ------------------------------------------------------------------
    def answered_rows(self, batch_id: uuid.UUID, after_line: int, limit: int) -> list[BatchRow]:
        """Lines that have their answer (scored or failed), in file order."""
        query = (
            select(BatchRow)
            .where(BatchRow.batch_id == batch_id, BatchRow.status != "queued", BatchRow.line > after_line)
            .order_by(BatchRow.line)
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def failed_rows(self, batch_id: uuid.UUID, limit: int) -> list[tuple[int, str | None, dict[str, Any]]]:
        query = (
            select(BatchRow.line, BatchRow.row_ref, BatchRow.error)
            .where(BatchRow.batch_id == batch_id, BatchRow.status == "failed")
            .order_by(BatchRow.line)
            .limit(limit)
        )
        return [(row.line, row.row_ref, row.error or {}) for row in self.session.execute(query)]

    # -- retention and erasure ------------------------------------------------------------
    def finished_unpurged_before(self, cutoff: datetime, limit: int = 500) -> list[Batch]:
        query = select(Batch).where(
            Batch.status.in_(FINISHED_BATCH_STATUSES), Batch.finished_at < cutoff, Batch.purged_at.is_(None))
        return list(self.session.scalars(query.limit(limit)))

    def purge_rows(self, batch_id: uuid.UUID, now: datetime) -> int:
        """Delete every line (inputs and answers); the batch keeps its counts."""
        deleted = self.session.execute(
            delete(BatchRow).where(BatchRow.batch_id == batch_id).execution_options(synchronize_session=False)).rowcount
        self.session.execute(update(Batch).where(Batch.id == batch_id).values(purged_at=now)
                             .execution_options(synchronize_session=False))
        return deleted

    def subject_row_count(self, tenant_id: uuid.UUID, subject_digest: str) -> int:
        return int(self.session.scalar(select(func.count()).select_from(BatchRow).join(Batch, Batch.id == BatchRow.batch_id)
                                       .where(Batch.tenant_id == tenant_id, BatchRow.subject_digest == subject_digest)) or 0)

    def delete_subject_rows(self, tenant_id: uuid.UUID, subject_digest: str) -> int:
        """Every line of this subject in the tenant's batches (the digest is per tenant, so
        the tenant condition is belt and braces)."""
        batches = select(Batch.id).where(Batch.tenant_id == tenant_id)
        result = self.session.execute(
            delete(BatchRow).where(BatchRow.subject_digest == subject_digest, BatchRow.batch_id.in_(batches))
            .execution_options(synchronize_session=False))
        return result.rowcount

    def batches_count(self, tenant_id: uuid.UUID) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Batch).where(Batch.tenant_id == tenant_id)) or 0)

    def delete(self, batch: Batch) -> None:
        self.session.execute(delete(BatchRow).where(BatchRow.batch_id == batch.id).execution_options(synchronize_session=False))
        self.session.delete(batch)
        self.session.flush()
