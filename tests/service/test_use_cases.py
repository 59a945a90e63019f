"""The use cases the routes hand over to, called directly: job submission (commit,
idempotent replay, the capped wait) and readiness; and over HTTP, the paginated lists'
shared query parameters."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from service_db import fresh_database
from service_helpers import png_bytes, problem
from sqlalchemy import func, select

from twinlens import queue
from twinlens.blobs import LocalBlobStore
from twinlens.db.migrate import upgrade
from twinlens.db.models import Job
from twinlens.db.session import Database
from twinlens.generic import GenericPlugin
from twinlens.services import health, keys, models
from twinlens.services.inputs import SubmittedInputs
from twinlens.services.submission import JobSubmission, accept_job, submit_job_request
from twinlens.settings import Settings


class RecordingConsumer:
    """Takes the published job ids and runs nothing, so jobs stay queued."""

    def __init__(self) -> None:
        self.predicts: list[str] = []

    def submit_predict(self, job_id: str, plugin: str) -> None:
        self.predicts.append(job_id)

    def health(self) -> dict[str, Any]:
        return {"alive": True, "loaded_models": []}


@pytest.fixture(params=["postgresql", "sqlite"])
def service(request, tmp_path, generic_bundle):
    if request.param == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'u.db'}"
    settings = Settings(data_dir=tmp_path, database_url=url, max_wait_seconds=0.3)
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        models.register_bundle(session, None, str(generic_bundle), activate=True)
        tenant = keys.ensure_tenant(session, "use-cases")
        principal = keys.Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=uuid.uuid4(), is_admin=False)
    previous = queue.local_consumer()
    recorder = RecordingConsumer()
    queue.set_local_consumer(recorder)
    try:
        yield settings, database, LocalBlobStore(tmp_path / "blobs"), principal, recorder
    finally:
        queue.set_local_consumer(previous)
        database.dispose()


@pytest.fixture
def fresh_postgres_url():
    with fresh_database() as url:
        yield url


def _submission(text: str = "a small red square", key: str | None = None) -> JobSubmission:
    inputs = SubmittedInputs(image_bytes=png_bytes(seed=3), image_media_type="image/png", texts={"text": text})
    return JobSubmission(plugin=GenericPlugin(), inputs=inputs, idempotency_key=key)


def _accept(service, submission: JobSubmission):
    settings, database, blobs, principal, _ = service
    with database.session() as session:
        return accept_job(session, blobs, settings, principal, submission)


def _job_count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Job))


def test_a_submission_is_committed_and_published_before_it_returns(service):
    settings, database, _, _, recorder = service
    submitted = _accept(service, _submission())
    assert submitted.created and submitted.job.status == "queued"
    assert recorder.predicts == [str(submitted.job.id)]
    with database.session() as session:  # another session sees it: it is committed
        assert session.get(Job, submitted.job.id).texts == {"text": "a small red square"}


def test_the_same_idempotency_key_replays_the_first_job(service):
    first = _accept(service, _submission(key="order-7"))
    again = _accept(service, _submission(key="order-7"))
    assert (again.job.id, again.created) == (first.job.id, False)
    assert _job_count(service[1]) == 1


def test_a_request_losing_the_idempotency_race_at_the_insert_replays_the_winner(service):
    """Both requests pass the 'is this key known?' check before either commits; the loser's
    insert then fails on the unique key (at its flush on PostgreSQL, which waits for the
    winner's commit) and must answer with the winner's job, not an error."""
    import threading

    settings, database, blobs, principal, _ = service
    winner_flushed, results = threading.Event(), {}

    def win() -> None:
        with database.session() as session:
            real_commit = session.commit

            def slow_commit() -> None:  # holds the uncommitted row while the loser runs
                winner_flushed.set()
                time.sleep(1.0)
                real_commit()

            session.commit = slow_commit
            results["winner"] = accept_job(session, blobs, settings, principal, _submission(key="race-7"))

    thread = threading.Thread(target=win)
    thread.start()
    assert winner_flushed.wait(30)
    loser = _accept(service, _submission(key="race-7"))
    thread.join(30)
    assert (loser.job.id, loser.created) == (results["winner"].job.id, False)
    assert _job_count(database) == 1


def test_waiting_for_a_result_is_capped_by_the_server(service):
    settings, database, blobs, principal, _ = service
    started = time.monotonic()
    with database.session() as session:
        submitted = asyncio.run(submit_job_request(session, database, blobs, settings, principal, _submission(),
                                                   wait_seconds=600))
    assert submitted.job.status == "queued", "nothing runs jobs here: the wait ends at the cap"
    assert settings.max_wait_seconds <= time.monotonic() - started < 10


def test_readiness_names_each_failing_part(service, tmp_path):
    settings, database, _, _, recorder = service
    ready = health.readiness(database)
    assert ready.failing == ["models"], ready.checks  # the active model is not loaded by the recorder
    assert ready.checks["models"]["active"] and ready.checks["models"]["loaded"] == []
    queue.set_local_consumer(None)
    unreachable = Database("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    try:
        down = health.readiness(unreachable)
    finally:
        unreachable.dispose()
    assert not down.ready and down.failing == ["database", "worker", "models"]
    assert "error" in down.checks["database"] and down.checks["worker"]["mode"] == "in-process"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/training-runs"])
def test_every_paginated_list_checks_its_page_parameters_the_same_way(live, path):
    with live.client() as admin:
        assert problem(admin.get(path, params={"cursor": "not-a-cursor"}), 422)["errors"] == [
            {"field": "cursor", "reason": "not a cursor this API returned"}]
        for limit in (0, 101):
            problem(admin.get(path, params={"limit": limit}), 422)
        assert admin.get(path, params={"limit": 100}).status_code == 200
    with live.client("tl_not-a-key") as stranger:  # who may ask is answered before what was asked
        problem(stranger.get(path, params={"cursor": "not-a-cursor"}), 401)


def test_a_non_admin_is_refused_the_training_list_before_its_cursor_is_read(live):
    with live.client(live.new_tenant_key()) as client:
        problem(client.get("/v1/training-runs", params={"cursor": "not-a-cursor"}), 403)
