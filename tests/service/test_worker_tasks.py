"""The worker's task code, called directly (as the in-process worker and the later Celery
tasks do): batching, idempotency by job id, per-job failure, recovery and retention."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from service_helpers import png_bytes
from sqlalchemy import func, select, update

from twinlens import queue
from twinlens.blobs import LocalBlobStore
from twinlens.contract.plugin import RawInput
from twinlens.db.base import utcnow
from twinlens.db.migrate import upgrade
from twinlens.db.models import Job, ModelVersion, Result
from twinlens.db.session import Database
from twinlens.services import jobs, keys, models
from twinlens.services.views import job_view
from twinlens.settings import Settings
from twinlens.worker import tasks
from twinlens.worker.context import WorkerContext


class RecordingConsumer:
    """Stands in for the in-process worker: records what was published."""

    def __init__(self) -> None:
        self.predicts: list[str] = []
        self.webhooks: list[tuple[str, float]] = []

    def submit_predict(self, job_id: str, plugin: str) -> None:
        self.predicts.append(job_id)

    def submit_webhook(self, delivery_id: str, delay_seconds: float) -> None:
        self.webhooks.append((delivery_id, delay_seconds))

    def health(self) -> dict[str, Any]:
        return {"alive": True}


@pytest.fixture
def ctx(tmp_path, generic_bundle):
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'w.db'}", job_max_attempts=3)
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        models.register_bundle(session, None, str(generic_bundle), activate=True)
    previous = queue.local_consumer()
    recorder = RecordingConsumer()
    queue.set_local_consumer(recorder)
    context = WorkerContext.from_settings(settings, database, LocalBlobStore(tmp_path / "blobs"))
    context.recorder = recorder  # type: ignore[attr-defined]
    try:
        yield context
    finally:
        queue.set_local_consumer(previous)
        database.dispose()


def _submit(ctx, texts: dict | None = None, image: bytes | None = None) -> uuid.UUID:
    with ctx.db.session() as session:
        principal = _principal(session)
        raw = RawInput(image_bytes=image, media_type="image/png" if image else None, texts=texts or {"text": None})
        request = jobs.JobRequest("generic", raw, None, None, uuid.uuid4().hex)
        return jobs.submit_job(session, ctx.blobs, principal, request).job.id


def _principal(session) -> keys.Principal:
    tenant = keys.ensure_tenant(session, "worker-tests")
    return keys.Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=uuid.uuid4(), is_admin=False)


def _job(ctx, job_id: uuid.UUID) -> Job:
    with ctx.db.session() as session:
        job = session.get(Job, job_id)
        job_view(job)  # load everything before the session closes
        return job


def test_publish_happens_only_after_commit(ctx):
    job_id = _submit(ctx, {"text": "after commit"})
    assert ctx.recorder.predicts == [str(job_id)]
    with pytest.raises(RuntimeError):
        with ctx.db.session() as session:
            raw = RawInput(texts={"text": "rolled back"})
            jobs.submit_job(session, ctx.blobs, _principal(session), jobs.JobRequest("generic", raw, None, None, "x"))
            raise RuntimeError("the request failed after the service call")
    assert ctx.recorder.predicts == [str(job_id)]


def test_one_batch_per_model_and_idempotent_by_job_id(ctx):
    ids = [_submit(ctx, {"text": f"batch {i}"}, png_bytes(seed=i) if i % 2 else None) for i in range(5)]
    first = tasks.run_predict_jobs([str(i) for i in ids], ctx)
    again = tasks.run_predict_jobs([str(i) for i in ids], ctx)
    assert first == {"claimed": 5, "succeeded": 5, "failed": 0, "skipped": 0, "batches": 1}
    assert again == {"claimed": 0, "succeeded": 0, "failed": 0, "skipped": 0, "batches": 0}
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 5
    assert all(_job(ctx, job_id).attempts == 1 for job_id in ids)


def test_a_bad_input_fails_only_its_own_job(ctx):
    good = [_submit(ctx, {"text": "fine"}), _submit(ctx, None, png_bytes(seed=99))]
    broken = _submit(ctx, None, png_bytes(seed=1234))
    ctx.blobs.delete(_job(ctx, broken).input_blob)
    counts = tasks.run_predict_jobs([str(i) for i in [*good, broken]], ctx)
    assert counts["succeeded"] == 2 and counts["failed"] == 1
    failed = _job(ctx, broken)
    assert failed.status == "failed" and failed.error == {"field": "image", "reason": "the input image is no longer stored"}
    assert all(_job(ctx, job_id).status == "succeeded" for job_id in good)


def test_an_unloadable_model_fails_its_jobs_not_the_worker(ctx, tmp_path):
    job_id = _submit(ctx, {"text": "model gone"})
    with ctx.db.session() as session:
        session.execute(update(ModelVersion).values(bundle_path=str(tmp_path / "vanished")))
    assert tasks.run_predict_jobs([str(job_id)], ctx)["failed"] == 1
    assert "could not be loaded" in _job(ctx, job_id).error["reason"]


def test_a_job_that_keeps_killing_workers_fails_instead_of_looping(ctx):
    job_id = _submit(ctx, {"text": "poison"})
    with ctx.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(attempts=3))
    assert tasks.run_predict_jobs([str(job_id)], ctx)["claimed"] == 0
    job = _job(ctx, job_id)
    assert job.status == "failed" and "gave up after 3 attempts" in job.error["reason"]


def test_sweep_requeues_jobs_lost_with_their_worker(ctx):
    orphans = [_submit(ctx, {"text": f"orphan {i}"}) for i in range(2)]
    with ctx.db.session() as session:
        stale = utcnow() - timedelta(seconds=ctx.settings.job_stale_after_seconds + 5)
        session.execute(update(Job).where(Job.id.in_(orphans)).values(status="running", attempts=1, started_at=stale))
    ctx.recorder.predicts.clear()
    swept = tasks.sweep(ctx, queued_older_than=3600.0)  # only the requeue publishes here
    assert swept["requeued"] == 2
    assert sorted(ctx.recorder.predicts) == sorted(str(job_id) for job_id in orphans)
    assert all(_job(ctx, job_id).status == "queued" for job_id in orphans)
    assert tasks.run_predict_jobs([str(job_id) for job_id in orphans], ctx)["succeeded"] == 2
    assert all(_job(ctx, job_id).attempts == 2 for job_id in orphans)


def test_retention_purges_inputs_of_old_finished_jobs(ctx):
    old, recent = _submit(ctx, {"text": "old"}, png_bytes(seed=5)), _submit(ctx, {"text": "new"}, png_bytes(seed=6))
    tasks.run_predict_jobs([str(old), str(recent)], ctx)
    old_blob, recent_blob = _job(ctx, old).input_blob, _job(ctx, recent).input_blob
    with ctx.db.session() as session:
        long_ago = utcnow() - timedelta(days=ctx.settings.retention_days + 1)
        session.execute(update(Job).where(Job.id == old).values(finished_at=long_ago))
    assert tasks.purge_expired_inputs(ctx) == 1
    purged, kept = _job(ctx, old), _job(ctx, recent)
    assert purged.input_blob is None and purged.texts is None and purged.inputs_purged_at is not None
    assert not ctx.blobs.exists(old_blob) and ctx.blobs.exists(recent_blob)
    assert kept.texts == {"text": "new"}
    assert job_view(purged).inputs == {"purged_at": purged.inputs_purged_at.isoformat()}
    assert purged.result is not None  # the decision stays; only the inputs go
    assert tasks.purge_expired_inputs(ctx) == 0
