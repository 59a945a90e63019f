"""A batch's results are written with one commit (issue 15: fewer round trips per job),
each in its own savepoint: a result that cannot be stored fails only its own job."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack

import pytest
from service_db import fresh_database
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from twinlens import queue
from twinlens.blobs import LocalBlobStore
from twinlens.contract.plugin import RawInput
from twinlens.db.migrate import upgrade
from twinlens.db.models import Job
from twinlens.db.session import Database
from twinlens.services import execution, jobs, keys, models
from twinlens.settings import Settings
from twinlens.worker import pipeline, tasks
from twinlens.worker.context import WorkerContext


class _Ignore:
    def submit_predict(self, job_id, plugin): ...
    def submit_webhook(self, delivery_id, delay_seconds): ...
    def health(self):
        return {"alive": True}


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request, tmp_path, generic_bundle):
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'w.db'}" if request.param == "sqlite" else stack.enter_context(fresh_database())
        yield from _context(tmp_path, generic_bundle, url)


def _context(tmp_path, generic_bundle, url):
    settings = Settings(data_dir=tmp_path, database_url=url, batch_max_delay_ms=0)
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        models.register_bundle(session, None, str(generic_bundle), activate=True)
    previous = queue.local_consumer()
    queue.set_local_consumer(_Ignore())
    try:
        yield WorkerContext.from_settings(settings, database, LocalBlobStore(tmp_path / "blobs"))
    finally:
        queue.set_local_consumer(previous)
        database.dispose()


def _submit(ctx, text: str) -> uuid.UUID:
    with ctx.db.session() as session:
        tenant = keys.ensure_tenant(session, f"writes-{uuid.uuid4().hex[:8]}")
        principal = keys.Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=uuid.uuid4(), is_admin=False)
        request = jobs.JobRequest("generic", RawInput(texts={"text": text}), None, None, uuid.uuid4().hex)
        return jobs.submit_job(session, ctx.blobs, principal, request).job.id


def test_one_commit_for_the_batch_and_an_unstorable_result_fails_alone(ctx, monkeypatch):
    ids = [_submit(ctx, f"a small red square {i}") for i in range(4)]
    doomed = ids[2]
    store = execution.complete_job

    def complete_job(session, claimed, outcome):
        stored = store(session, claimed, outcome)  # written, then the savepoint is rolled back
        if claimed.id == doomed:
            raise ValueError("the result row cannot be stored")
        return stored

    monkeypatch.setattr(execution, "complete_job", complete_job)
    commits: list[int] = []
    finishing: list[int] = []
    write_batch = pipeline.write_batch

    def counted_write(*args, **kwargs):
        before = len(commits)
        try:
            return write_batch(*args, **kwargs)
        finally:
            finishing.append(len(commits) - before)

    monkeypatch.setattr(pipeline, "write_batch", counted_write)

    def on_commit(connection) -> None:
        commits.append(1)

    event.listen(ctx.db.engine, "commit", on_commit)
    try:
        counts = tasks.run_predict_jobs([str(i) for i in ids], ctx)
    finally:
        event.remove(ctx.db.engine, "commit", on_commit)
    assert counts["succeeded"] == 3 and counts["failed"] == 1 and counts["batches"] == 1, counts
    with ctx.db.session() as session:
        stored = {job_id: session.get(Job, job_id) for job_id in ids}
        assert {job_id: job.status for job_id, job in stored.items()} == {
            job_id: "failed" if job_id == doomed else "succeeded" for job_id in ids}
        assert stored[doomed].result is None and "storing the result failed" in stored[doomed].error["reason"]
        assert all(stored[job_id].result is not None for job_id in ids if job_id != doomed)
    # The batch's results, then the failed job's own write: not one commit per job.
    assert finishing == [2], finishing


def test_results_are_written_beside_the_next_batch_and_all_stored_when_the_task_returns(tmp_path, generic_bundle, monkeypatch):
    """The model never waits for the database: batch k's results are written on the writer
    thread while batch k+1 is predicted, and the task returns only once every one is stored."""
    with fresh_database() as url:
        for ctx in _context(tmp_path, generic_bundle, url):
            ctx.settings.batch_max_size = 2
            ids = [_submit(ctx, f"a small red square {i}") for i in range(6)]
            threads: dict[str, set[str]] = {"predict": set(), "write": set()}
            predict_batch, write_batch = pipeline.predict_batch, pipeline.write_batch

            def predicting(batch):
                threads["predict"].add(threading.current_thread().name)
                return predict_batch(batch)

            def writing(context, decided):
                threads["write"].add(threading.current_thread().name)
                time.sleep(0.2)  # a slow database: the task must still wait for the last write
                return write_batch(context, decided)

            monkeypatch.setattr(pipeline, "predict_batch", predicting)
            monkeypatch.setattr(pipeline, "write_batch", writing)
            counts = tasks.run_predict_jobs([str(ids[0])], ctx)  # one message; the rest is claimed two at a time
            assert counts["succeeded"] == 6 and counts["batches"] == 3, counts
            assert threads["predict"] == {threading.current_thread().name}
            assert len(threads["write"]) == 1 and next(iter(threads["write"])).startswith("twinlens-write")
            with ctx.db.session() as session:
                assert {session.get(Job, job_id).status for job_id in ids} == {"succeeded"}


def test_a_database_lost_during_a_write_fails_the_task_so_its_jobs_are_handed_back(tmp_path, generic_bundle, monkeypatch):
    with fresh_database() as url:
        for ctx in _context(tmp_path, generic_bundle, url):
            ctx.settings.batch_max_size = 2
            ids = [_submit(ctx, f"a small red square {i}") for i in range(4)]

            def lost(context, decided):
                raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))

            monkeypatch.setattr(pipeline, "write_batch", lost)
            with pytest.raises(OperationalError):
                tasks.run_predict_jobs([str(ids[0])], ctx)
            with ctx.db.session() as session:  # nothing was written as finished; the sweep requeues them
                assert {session.get(Job, job_id).status for job_id in ids} <= {"running", "queued"}
