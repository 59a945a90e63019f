"""The production path for real: PostgreSQL, a Redis broker, the API process and
`twinlens worker` processes. Workers are SIGKILLed and SIGTERMed, Redis is restarted
(losing every queued message), workers join mid-stream, a model version is activated
mid-stream, and a job whose input kills its worker every time is given up on."""

from __future__ import annotations

import base64
import importlib.util
import time
from pathlib import Path

import psycopg
import pytest

from fleet import Fleet, RedisServer
from plugin_fakes import install_fake
from service_helpers import png_bytes
from twinlens.contract.registry import GROUP

pytestmark = pytest.mark.slow

CRASH_PLUGIN = '''
import os
import signal

from twinlens.generic import GenericPlugin


class CrashPlugin(GenericPlugin):
    """The generic plugin, except that one input kills the process, as an out-of-memory
    kill would: nothing in the worker can catch it."""

    name = "crash_test"

    def prepare(self, raw):
        if "KILL-THE-WORKER" in (raw.texts.get("text") or ""):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().prepare(raw)
'''


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from service_db import fresh_database

    root = tmp_path_factory.mktemp("fleet")
    plugins = install_fake(root / "site", "crash-test-plugin", {"crash_test": "crash_plugin:CrashPlugin"},
                           {"crash_plugin": CRASH_PLUGIN}, GROUP)
    with fresh_database() as database_url:
        redis = RedisServer(root / "redis").start()
        running = Fleet(root, database_url, redis, extra_env={"PYTHONPATH": str(plugins)}).start_api()
        try:
            yield running
        finally:
            running.close()
            redis.stop()


def _sql(fleet: Fleet, query: str, params=()) -> list[tuple]:
    url = fleet.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        return connection.execute(query, params).fetchall()


def _register(client, bundle: Path) -> dict:
    response = client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True})
    assert response.status_code == 201, response.text
    return response.json()


def _submit(client, plugin: str, i: int, text: str | None = None) -> str:
    if i % 2:
        body = {"inputs": {"text": text or f"job {i}: a small shape"}}
        response = client.post(f"/v1/plugins/{plugin}/jobs", json=body)
    else:
        response = client.post(f"/v1/plugins/{plugin}/jobs", files={"image": ("x.png", png_bytes(seed=i), "image/png")},
                               data={"text": text or f"job {i}"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _wait_all_finished(fleet: Fleet, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_jobs = _sql(fleet, "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status IN ('queued', 'running')", (ids,))[0][0]
        if open_jobs == 0:
            return
        time.sleep(0.5)
    statuses = _sql(fleet, "SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (ids,))
    raise AssertionError(f"jobs still open after {timeout}s: {statuses}")


def _wait_running(fleet: Fleet, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _sql(fleet, "SELECT count(*) FROM jobs WHERE status = 'running'")[0][0] > 0:
            return
        time.sleep(0.01)
    raise AssertionError("no job was running")


def test_300_jobs_survive_sigkill_redis_restart_and_a_model_switch(fleet, generic_bundle, second_generic_bundle):
    queues = "predict.generic,webhooks"
    with fleet.client() as client:
        first = _register(client, generic_bundle)
        for name in ("w1", "w2"):
            fleet.start_worker(name, queues)
        for name in ("w1", "w2"):
            fleet.wait_worker_ready(name)
        ids, switched_at, second = [], None, None
        for i in range(300):
            ids.append(_submit(client, "generic", i))
            if i == 60:
                _wait_running(fleet)
                fleet.kill_worker("w1")  # mid-batch: it holds running jobs
                fleet.start_worker("w3", queues)  # a third joins while jobs flow
            if i == 120:
                fleet.redis.restart()  # every queued message is lost
            if i == 180:
                second = _register(client, second_generic_bundle)
                switched_at = len(ids)
            time.sleep(0.04)
        _wait_all_finished(fleet, ids, timeout=300)

    rows = _sql(fleet, "SELECT j.id::text, j.status, r.model_version, (SELECT count(*) FROM results x WHERE x.job_id = j.id), j.attempts "
                       "FROM jobs j LEFT JOIN results r ON r.job_id = j.id WHERE j.id = ANY(%s)", (ids,))
    by_id = {row[0]: row for row in rows}
    assert len(by_id) == 300
    assert {row[1] for row in rows} == {"succeeded"}, "every job ends succeeded"
    assert all(row[3] == 1 for row in rows), "each result row written exactly once"
    versions = [by_id[job_id][2] for job_id in ids]
    assert set(versions[:switched_at]) == {first["version"]}
    assert set(versions[switched_at:]) == {second["version"]}
    assert max(row[4] for row in rows) >= 2, "the killed worker held jobs; they were recovered and run again"
    done = {name: fleet.jobs_done_by(name) for name in ("w1", "w2", "w3")}
    assert done["w2"] > 0 and done["w3"] > 0, f"both survivors, and the worker added mid-stream, took jobs: {done}"
    assert sum(done.values()) == 300, f"workers report every job stored once: {done}"


def test_a_job_that_always_kills_its_worker_fails_after_max_attempts(fleet, tmp_path):
    spec = importlib.util.spec_from_file_location("crash_plugin", fleet.root / "site" / "crash_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundle = _train_tiny(module.CrashPlugin(), tmp_path)
    queues = "predict.crash_test"
    with fleet.client() as client:
        _register(client, bundle)
        poison = _submit(client, "crash_test", 1, text="KILL-THE-WORKER please")
        innocent = [_submit(client, "crash_test", i) for i in range(2, 6)]
        fleet.start_worker("p1", queues)
        fleet.supervise(queues)
        _wait_all_finished(fleet, [poison, *innocent], timeout=240)
        failed = client.get(f"/v1/jobs/{poison}").json()
        answers = [client.get(f"/v1/jobs/{job_id}").json() for job_id in innocent]
    assert failed["status"] == "failed"
    assert "gave up after 3 attempts" in failed["error"]["reason"]
    # Should an innocent job fail, the message says why and how often it was claimed.
    why = [(a["status"], a.get("error"), _sql(fleet, "SELECT claimed_by, attempts FROM jobs WHERE id = %s", (a["id"],)))
           for a in answers]
    assert [a["status"] for a in answers] == ["succeeded"] * 4, ("only the poison job fails", why)
    assert fleet.restarts >= 3


def test_sigterm_finishes_what_the_worker_holds(fleet, generic_bundle):
    queues = "predict.generic"
    with fleet.client() as client:
        response = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "activate": True})
        assert response.status_code in (201, 409), response.text  # 409: an earlier test registered it
        fleet.start_worker("t1", queues)
        fleet.wait_worker_ready("t1")
        ids = [_submit(client, "generic", i) for i in range(40)]
        _wait_running(fleet)
        worker = fleet.workers.pop("t1")
        worker.terminate()
        assert worker.wait(30) == 0, "warm shutdown exits cleanly"
        held = _sql(fleet, "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status = 'running'", (ids,))[0][0]
        assert held == 0, "nothing left running: what it claimed, it finished"
        fleet.start_worker("t2", queues)
        _wait_all_finished(fleet, ids, timeout=120)
    statuses = _sql(fleet, "SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (ids,))
    assert statuses == [("succeeded", 40)]


def _train_tiny(plugin, tmp_path: Path) -> Path:
    from twinlens.cli.service import tiny_encoders
    from twinlens.engine.training import train_model

    data = plugin.read_dataset(plugin.make_sample_dataset(tmp_path / "data", n=40, seed=3))
    spec = plugin.default_model_spec().model_copy(update=tiny_encoders())
    config = plugin.training_defaults().model_copy(update={"epochs": 1, "progress": False})
    return train_model(plugin, data, out_dir=tmp_path / "bundle", spec=spec, config=config).bundle_dir
