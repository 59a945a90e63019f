"""A dead worker's jobs come back within a minute, found by its lapsed heartbeat; a worker
presumed dead that answers late writes nothing.

The fleet test runs real `twinlens worker` processes with the DEFAULT recovery settings
(heartbeat every 5 s, 20 s TTL, a sweep every 10 s, the 600 s stale timeout kept as the
last resort) and SIGKILLs one mid-batch."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from fleet import RedisServer
from recovery_fleet import DefaultsFleet, PrivatePostgres, job_counts, wait_until
from service_db import fresh_database
from service_helpers import png_bytes
from twinlens.blobs import LocalBlobStore
from twinlens.contract.plugin import RawInput
from twinlens.db.migrate import upgrade
from twinlens.db.models import Job, Result
from twinlens.db.session import Database
from twinlens.services import execution, jobs, keys, models
from twinlens.services.execution import JobOutcome
from twinlens.settings import Settings
from twinlens.worker import tasks
from twinlens.worker.context import WorkerContext
from twinlens.worker.heartbeat import HELD, HeartbeatReader, stop_heartbeat, worker_name

pytestmark = pytest.mark.slow

RECOVERY_BOUND_SECONDS = 60.0
SUBMITTERS = 8


# -- the fleet, SIGKILL mid-batch, default settings -------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("dead-worker-fleet")
    with fresh_database() as database_url:
        redis = RedisServer(root / "redis").start()
        running = DefaultsFleet(root, database_url, redis).start_api()
        try:
            yield running
        finally:
            try:
                running.close()
            finally:
                redis.stop()


def _submit(client, i: int) -> str:
    while True:
        if i % 2:
            response = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": f"job {i}: a small shape"}})
        else:
            response = client.post("/v1/plugins/generic/jobs", files={"image": ("x.png", png_bytes(seed=i), "image/png")},
                                   data={"text": f"job {i}"})
        if response.status_code != 429:  # over the key's rate limit: wait as told, like any client
            break
        time.sleep(float(response.headers.get("retry-after", "1")))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _held_by(fleet: DefaultsFleet, worker: str) -> list[str]:
    rows = fleet.sql("SELECT id::text FROM jobs WHERE status = 'running' AND claimed_by LIKE %s", (f"{worker}@fleet-test#%",))
    return [row[0] for row in rows]


def _kill_when_holding_a_batch(fleet: DefaultsFleet, worker: str) -> tuple[datetime, list[str]]:
    """SIGKILL `worker` the moment it holds two or more running jobs; what it held then."""
    wait_until(lambda: len(_held_by(fleet, worker)) >= 2, 60, f"{worker} never held a batch", every=0.005)
    fleet.kill_worker(worker)
    killed_at = datetime.now(timezone.utc)
    return killed_at, _held_by(fleet, worker)  # a dead worker changes nothing: this is what it held


def test_a_sigkilled_workers_jobs_run_again_within_a_minute_with_default_settings(fleet, generic_bundle):
    defaults = Settings(_env_file=None)
    assert (defaults.worker_heartbeat_interval_seconds, defaults.worker_heartbeat_ttl_seconds,
            defaults.sweep_interval_seconds, defaults.job_stale_after_seconds) == (5.0, 20.0, 10.0, 600.0)
    assert "TWINLENS_SWEEP_INTERVAL_SECONDS" not in fleet.env() and "TWINLENS_JOB_STALE_AFTER_SECONDS" not in fleet.env()
    queues = "predict.generic"
    with fleet.client() as client:
        response = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "activate": True})
        assert response.status_code == 201, response.text
        for name in ("w1", "w2"):
            fleet.start_worker(name, queues)
        for name in ("w1", "w2"):
            fleet.wait_worker_ready(name, timeout=240)  # importing torch on two shared cores
        with ThreadPoolExecutor(SUBMITTERS) as submitters:  # concurrent clients: batches of several jobs
            ids = list(submitters.map(lambda i: _submit(client, i), range(40)))
            killer = submitters.submit(_kill_when_holding_a_batch, fleet, "w1")
            ids += submitters.map(lambda i: _submit(client, i), range(40, 200))
            killed_at, held = killer.result(timeout=60)
        assert len(held) >= 2, "w1 was not holding a batch when it was killed"
        fleet.wait_finished(ids, timeout=RECOVERY_BOUND_SECONDS + 120)

    counts = job_counts(fleet, ids)
    reclaimed = fleet.sql("SELECT id::text, started_at, finished_at, attempts, claimed_by FROM jobs WHERE id = ANY(%s)", (held,))
    waits = sorted((started - killed_at).total_seconds() for _, started, _, _, _ in reclaimed)
    done = sorted((finished - killed_at).total_seconds() for _, _, finished, _, _ in reclaimed)
    print(f"\n{counts.line('SIGKILL mid-batch, default settings')}")
    print(f"the dead worker held {len(held)} job(s); they were claimed again {waits[0]:.1f}-{waits[-1]:.1f} s after the kill "
          f"and finished {done[0]:.1f}-{done[-1]:.1f} s after it")
    assert counts.succeeded == counts.submitted == 200, counts
    assert counts.duplicated == 0
    assert all(attempts == 2 and not claimed_by.startswith("w1@") for _, _, _, attempts, claimed_by in reclaimed)
    assert waits[-1] < RECOVERY_BOUND_SECONDS, f"the dead worker's jobs waited {waits[-1]:.1f} s"
    stale_sweeps = fleet.sql("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND attempts > 2", (ids,))[0][0]
    assert stale_sweeps == 0


# -- fencing and the recovery rule, on PostgreSQL and SQLite ------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    if request.param == "postgresql":
        with fresh_database() as url:
            yield from _migrated(url)
    else:
        yield from _migrated(f"sqlite:///{tmp_path / 'fence.db'}")


def _migrated(url: str):
    database = Database(url)
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


def _register_model(database, bundle) -> None:
    with database.session() as session:
        models.register_bundle(session, None, str(bundle), activate=True)


def _queued_job(database, tmp_path) -> uuid.UUID:
    with database.session() as session:
        tenant = keys.ensure_tenant(session, "fencing")
        principal = keys.Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=uuid.uuid4(), is_admin=False)
        request = jobs.JobRequest("generic", RawInput(texts={"text": "who writes?"}), None, None, uuid.uuid4().hex)
        return jobs.submit_job(session, LocalBlobStore(tmp_path / "blobs"), principal, request).job.id


def _claim(database, job_id: uuid.UUID, worker: str) -> execution.ClaimedJob:
    with database.session() as session:
        (claimed,) = execution.claim_jobs(session, [job_id], 3, worker)
    return claimed


def _requeue_lost(database, living, grace: float = 0.0) -> int:
    with database.session() as session:
        return execution.requeue_jobs_of_lost_workers(session, living, grace, lambda job_id, plugin: None)


def _outcome(who: str) -> JobOutcome:
    return JobOutcome(heads={"written_by": who}, decision={"needs_review": False}, explanation={})


def test_a_late_result_from_a_worker_presumed_dead_writes_nothing(database, generic_bundle, tmp_path):
    _register_model(database, generic_bundle)
    job_id = _queued_job(database, tmp_path)
    first = _claim(database, job_id, "worker-a")
    assert _requeue_lost(database, lambda names: {}) == 1, "worker-a has no heartbeat: its job goes back"
    with database.session() as session:  # late, before anyone claimed it again
        assert not execution.complete_job(session, first, _outcome("worker-a"))
    second = _claim(database, job_id, "worker-b")
    with database.session() as session:  # late, after worker-b claimed it
        assert not execution.complete_job(session, first, _outcome("worker-a"))
        assert not execution.fail_job(session, first.id, "late failure", attempt=first.attempts)
    with database.session() as session:
        assert execution.complete_job(session, second, _outcome("worker-b"))
    with database.session() as session:
        job = session.get(Job, job_id)
        results = list(session.scalars(select(Result).where(Result.job_id == job_id)))
        assert (job.status, job.attempts, job.claimed_by, job.error) == ("succeeded", 2, "worker-b", None)
        assert [result.heads for result in results] == [{"written_by": "worker-b"}]


def test_only_jobs_no_living_worker_holds_are_taken_back(database, generic_bundle, tmp_path):
    _register_model(database, generic_bundle)
    job_id = _queued_job(database, tmp_path)
    claimed = _claim(database, job_id, "worker-a")
    held = {"worker-a": {str(job_id)}}
    assert _requeue_lost(database, lambda names: held) == 0, "alive and holding it"
    assert _requeue_lost(database, lambda names: None) == 0, "no judgement (Redis just restarted)"
    assert _requeue_lost(database, lambda names: {}, grace=3600.0) == 0, "claimed too recently to judge"
    assert _requeue_lost(database, lambda names: {"worker-a": set()}) == 1, "alive, but it let go of the job"
    with database.session() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.claimed_by, job.attempts) == ("queued", None, claimed.attempts)


def test_a_batch_cut_off_by_a_database_outage_is_let_go_and_taken_back(generic_bundle, tmp_path):
    postgres = PrivatePostgres().init()
    redis = RedisServer(tmp_path / "redis").start()
    try:
        settings = Settings(_env_file=None, data_dir=tmp_path, database_url=postgres.create_database("cut_off"), broker_url=redis.url,
                            worker_heartbeat_interval_seconds=0.2, worker_heartbeat_ttl_seconds=1.0)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        _register_model(database, generic_bundle)
        ids = [_queued_job(database, tmp_path) for _ in range(3)]
        context = WorkerContext.from_settings(settings, database, LocalBlobStore(tmp_path / "blobs"))

        def database_goes_away() -> bool:  # the batch is prepared; its results are not written yet
            if postgres.running():
                postgres.stop()
            return False

        with pytest.raises(OperationalError):
            tasks.run_predict_jobs(ids, context, should_stop=database_goes_away)
        assert not {str(job_id) for job_id in ids} & set(HELD.ids()), "the failed task let go of its jobs"
        postgres.start()
        with database.session() as session:
            stuck = {(job.status, job.claimed_by) for job in session.scalars(select(Job).where(Job.id.in_(ids)))}
        assert stuck == {("running", worker_name())}, "alive, heartbeating, but no longer holding them"
        reader = HeartbeatReader(settings)
        wait_until(lambda: reader([worker_name()]) is not None, 5, "the heartbeat reader never judged")
        assert _requeue_lost(database, reader) == 3
        assert tasks.run_predict_jobs(ids, context)["succeeded"] == 3
        reader.close()
        database.dispose()
    finally:
        stop_heartbeat()
        redis.stop()
        postgres.destroy()


# -- the heartbeat of a real process ------------------------------------------------------------


BEATING_PROCESS = textwrap.dedent('''
    import sys, time
    from twinlens.settings import Settings
    from twinlens.worker.heartbeat import HELD, current_worker

    HELD.hold(["job-held-by-the-child"])
    settings = Settings(_env_file=None, broker_url=sys.argv[1],
                        worker_heartbeat_interval_seconds=0.2, worker_heartbeat_ttl_seconds=1.0)
    print(current_worker(settings), flush=True)
    time.sleep(600)
''')


def test_a_heartbeat_names_what_its_process_holds_and_lapses_when_the_process_dies(tmp_path):
    # Short beats: the fleet test above shows the defaults (5 s, 20 s) at work.
    redis = RedisServer(tmp_path / "redis").start()
    settings = Settings(_env_file=None, broker_url=redis.url, worker_heartbeat_interval_seconds=0.2, worker_heartbeat_ttl_seconds=1.0)
    reader = HeartbeatReader(settings)
    child = subprocess.Popen([sys.executable, "-c", BEATING_PROCESS, redis.url], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.1)  # the reader judges nobody until Redis has been up for a TTL and a second
        name = child.stdout.readline().strip()
        assert f"#{child.pid}." in name, name
        assert reader([name, "never-started"]) == {name: {"job-held-by-the-child"}}
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_until(lambda: reader([name]) == {}, 3.0, "the dead process's heartbeat did not lapse within its TTL")
        redis.restart()
        assert reader([name]) is None, "right after a Redis restart no one is judged dead"
    finally:
        if child.poll() is None:
            child.kill()
        reader.close()
        redis.stop()
