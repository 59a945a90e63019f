"""Outage drills with real processes: a private PostgreSQL cluster and redis-server (the
shared ones keep serving other tests), the API as a `twinlens serve` process and a
`twinlens worker` process with the default recovery settings.

a. PostgreSQL restarted under load: the API answers 503 problem+json while it is down,
   the workers reconnect, every job finishes once.
b. Redis down while jobs are submitted: they wait in the database and the outbox publishes
   them once Redis is back, each run once.
c. A webhook receiver down for longer than the retry schedule: the deliveries end as dead
   letters, listed by GET /v1/webhook-deliveries?status=failed and re-sent on request.

Each drill prints jobs (or deliveries) submitted / succeeded / duplicated."""

from __future__ import annotations

import http.server
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from standardwebhooks.webhooks import Webhook

from fleet import RedisServer, free_port
from recovery_fleet import DefaultsFleet, PrivatePostgres, job_counts, wait_until
from service_helpers import problem
from twinlens.db.availability import database_unavailable
from twinlens.services.webhooks import backoff_seconds
from twinlens.settings import Settings

pytestmark = pytest.mark.slow

QUEUES = "predict.generic,webhooks"
WORKER_START_SECONDS = 240  # importing torch on a machine whose two cores are shared
# Drill c outlasts the retry schedule; the default one spans minutes (checked below), so
# the drill runs the same eight attempts on a schedule of seconds.
SHORT_RETRY_SCHEDULE = {"TWINLENS_WEBHOOK_RETRY_BASE_SECONDS": "0.2", "TWINLENS_WEBHOOK_RETRY_MAX_SECONDS": "1"}


@pytest.fixture(scope="module")
def drill(tmp_path_factory, generic_bundle):
    root = tmp_path_factory.mktemp("drills")
    postgres = PrivatePostgres().init()
    redis = RedisServer(root / "redis").start()
    database_url = postgres.create_database("twinlens_drills")
    fleet = DefaultsFleet(root, database_url, redis,
                          extra_env={"TWINLENS_ALLOW_PRIVATE_WEBHOOKS": "true", **SHORT_RETRY_SCHEDULE})
    fleet.postgres = postgres  # type: ignore[attr-defined]
    try:
        fleet.start_api()
        with fleet.client() as client:
            response = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "activate": True})
            assert response.status_code == 201, response.text
        fleet.start_worker("w1", QUEUES)
        fleet.wait_worker_ready("w1", timeout=WORKER_START_SECONDS)
        with fleet.client() as client:  # the model loads before the drills begin
            fleet.wait_finished([_accepted_id(_submit(client, "warm-up"))], timeout=WORKER_START_SECONDS)
        yield fleet
    finally:
        try:
            fleet.close()
        finally:
            redis.stop()
            postgres.destroy()  # stopped if a drill left it running; removed with its folder


def _submit(client: httpx.Client, key: str, body: dict | None = None) -> httpx.Response:
    """One job, retried after a 429 as a client would; the Idempotency-Key makes a retry safe."""
    while True:
        response = client.post("/v1/plugins/generic/jobs", json=body or {"inputs": {"text": f"drill {key}"}},
                               headers={"Idempotency-Key": key})
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))


def _accepted_id(response: httpx.Response) -> str:
    assert response.status_code in (200, 202), response.text
    return response.json()["id"]


# -- a. PostgreSQL restarted under load -------------------------------------------------------------


def test_drill_postgresql_restarted_under_load(drill):
    keys = [f"pg-drill-{i}" for i in range(80)]
    answers: dict[str, httpx.Response] = {}
    with drill.client() as client, ThreadPoolExecutor(2) as load:
        submitting = load.submit(_submit_steadily, client, keys, answers)
        wait_until(lambda: len(answers) >= 20, 60, "the load did not start")
        drill.postgres.stop()  # mid-stream: the worker holds claims it can no longer write
        try:
            outage_started = time.monotonic()
            wait_until(lambda: any(r.status_code == 503 for r in answers.values()), 30, "no submission met the outage")
            some_job = next(r.json()["id"] for r in answers.values() if r.status_code == 202)
            during = [client.get(f"/v1/jobs/{some_job}"), client.get("/readyz")]
            time.sleep(3)
        finally:
            drill.postgres.start()
            back = time.monotonic()
        submitting.result(timeout=120)
        refused = [key for key in keys if answers[key].status_code == 503]
        for response in [answers[key] for key in refused] + during[:1]:
            body = problem(response, 503)  # not 500
            assert body["type"].endswith("/database-unavailable") and response.headers["retry-after"], response.headers
            assert "psycopg" not in response.text and str(drill.postgres.port) not in response.text, "no driver text"
        problem(during[1], 503)  # /readyz says so too
        assert {r.status_code for r in answers.values()} <= {202, 503}, Counter(r.status_code for r in answers.values())
        assert max(r.elapsed.total_seconds() for r in answers.values()) < 10, "an answer hung while the database was down"
        # The refused submissions are sent again, as the 503 invites (the Idempotency-Key
        # answers the first job again had one been stored after all).
        answers.update({key: _submit(client, key) for key in refused})
        ids = [_accepted_id(answers[key]) for key in keys]
        drill.wait_finished(ids, timeout=180)
        settled = time.monotonic() - back

    counts = job_counts(drill, ids)
    stored = drill.sql("SELECT count(*) FROM jobs WHERE idempotency_key = ANY(%s)", (keys,))[0][0]
    print(f"\n{counts.line('PostgreSQL restarted under load')}; submissions answered 503 while it was down: "
          f"{len(refused)}; every job finished {settled:.1f} s after the database was back "
          f"(it was away {back - outage_started:.1f} s)")
    assert refused, "the drill never met the outage"
    assert stored == len(set(ids)) == len(keys), "each submission stored once: nothing half-written, none twice"
    assert counts.succeeded == counts.submitted and counts.duplicated == 0, counts


def _submit_steadily(client: httpx.Client, keys: list[str], answers: dict[str, httpx.Response]) -> None:
    for key in keys:
        answers[key] = _submit(client, key)
        time.sleep(0.05)


# -- b. Redis down while jobs are submitted ---------------------------------------------------------


def test_drill_redis_down_while_jobs_are_submitted(drill):
    with drill.client() as client:
        drill.redis.stop()
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(4) as submitters:
                ids = [_accepted_id(r) for r in submitters.map(lambda i: _submit(client, f"redis-drill-{i}"), range(20))]
            took = time.monotonic() - started
            time.sleep(2)
            waiting = drill.sql("SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (ids,))
        finally:
            drill.redis.start()  # empty, as a restarted Redis without persistence is
            back = time.monotonic()
        assert waiting == [("queued", 20)], "no broker, so nothing could run: the jobs wait in the database"
        assert took < 30, f"20 submissions took {took:.1f} s with Redis down"
        drill.wait_finished(ids, timeout=120)
        settled = time.monotonic() - back

    counts = job_counts(drill, ids)
    attempts = drill.sql("SELECT attempts, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY attempts", (ids,))
    print(f"\n{counts.line('Redis down while jobs were submitted')}; the 20 submissions took {took:.1f} s with Redis "
          f"down, and every job finished {settled:.1f} s after Redis was back")
    assert counts.succeeded == counts.submitted == 20 and counts.duplicated == 0, counts
    assert attempts == [(1, 20)], "each job ran once"


# -- c. a webhook receiver down for longer than the retry schedule ----------------------------------


class Receiver:
    """A webhook receiver on a port chosen up front: down (nothing listens) until `up()`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    def up(self) -> None:
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _tenant_key(client: httpx.Client) -> str:
    """An admin key of a new tenant (admin: it may read the webhook signing secret)."""
    response = client.post("/v1/keys", json={"tenant": f"drill-{uuid.uuid4().hex[:8]}", "admin": True})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def _failed_deliveries(client: httpx.Client, expected: int, timeout: float = 60) -> list[dict]:
    listed: list[dict] = []

    def all_dead() -> bool:
        listed[:] = client.get("/v1/webhook-deliveries", params={"status": "failed", "limit": 100}).json()["data"]
        return len(listed) >= expected

    wait_until(all_dead, timeout, f"not every delivery became a dead letter: {listed}", every=0.5)
    return listed


def test_drill_webhook_receiver_down_longer_than_the_retry_schedule(drill):
    receiver = Receiver()
    with drill.client() as admin:
        tenant_key, other_key = _tenant_key(admin), _tenant_key(admin)
    tenant = httpx.Client(base_url=drill.url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=30)
    other = httpx.Client(base_url=drill.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=30)
    try:
        secret = tenant.get("/v1/tenant").json()["webhook_secret"]
        body = {"inputs": {"text": "tell my receiver"}, "webhook_url": receiver.url}
        job_ids = [_accepted_id(_submit(tenant, f"hook-drill-{i}", body)) for i in range(3)]
        dead = _failed_deliveries(tenant, expected=3)
        max_attempts = Settings(_env_file=None).webhook_max_attempts
        assert {d["job_id"] for d in dead} == set(job_ids)
        assert all(d["attempts"] == max_attempts and d["next_attempt_at"] is None and d["delivered_at"] is None for d in dead)
        assert all(len(d["attempt_log"]) == max_attempts and d["last_error"] for d in dead)

        first = tenant.get("/v1/webhook-deliveries", params={"status": "failed", "limit": 2}).json()
        rest = tenant.get("/v1/webhook-deliveries", params={"status": "failed", "limit": 2, "cursor": first["next_cursor"]}).json()
        assert [d["id"] for d in first["data"] + rest["data"]] == [d["id"] for d in dead] and rest["next_cursor"] is None
        assert other.get("/v1/webhook-deliveries", params={"status": "failed"}).json()["data"] == [], "tenant-scoped"
        assert problem(other.post(f"/v1/webhook-deliveries/{dead[0]['id']}/redeliver"), 404)

        receiver.up()
        redelivered = [tenant.post(f"/v1/webhook-deliveries/{d['id']}/redeliver") for d in dead]
        assert [r.status_code for r in redelivered] == [202] * 3, [r.text for r in redelivered]
        assert {r.json()["status"] for r in redelivered} == {"pending"}
        wait_until(lambda: len(receiver.requests) >= 3, 30, "the redeliveries did not arrive")
        time.sleep(1)  # room for a duplicate to show up
        delivered = [tenant.get(f"/v1/jobs/{job_id}/deliveries").json()["data"][0] for job_id in job_ids]
        again = problem(tenant.post(f"/v1/webhook-deliveries/{dead[0]['id']}/redeliver"), 409)
        still_failed = tenant.get("/v1/webhook-deliveries", params={"status": "failed"}).json()["data"]
    finally:
        tenant.close()
        other.close()
        receiver.down()

    per_message = Counter(headers["webhook-id"] for headers, _ in receiver.requests)
    print(f"\nwebhook receiver down: deliveries submitted {len(job_ids)}, dead-lettered {len(dead)}, "
          f"redelivered and succeeded {sum(d['status'] == 'succeeded' for d in delivered)}, "
          f"duplicated {sum(n - 1 for n in per_message.values())}")
    assert [d["status"] for d in delivered] == ["succeeded"] * 3
    assert all(d["attempts"] == max_attempts + 1 for d in delivered), "the attempt log goes on after the redelivery"
    assert [a["number"] for a in delivered[0]["attempt_log"]] == list(range(1, max_attempts + 2))
    assert set(per_message.values()) == {1}, "each dead letter re-sent once"
    for headers, payload in receiver.requests:
        assert Webhook(secret).verify(payload, headers)["data"]["id"] in job_ids
    assert again["delivery_status"] == "succeeded" and still_failed == []


def test_the_default_retry_schedule_spans_minutes_before_a_dead_letter():
    """Why drill c may shorten it: the default eight attempts ride out a receiver that is
    away for two minutes, and give up (into a dead letter) within five."""
    defaults = Settings(_env_file=None)
    rng = random.Random(3)
    gaps = [(backoff_seconds(n, defaults.webhook_retry_base_seconds, defaults.webhook_retry_max_seconds, rng))
            for n in range(1, defaults.webhook_max_attempts)]
    shortest = sum(min(defaults.webhook_retry_max_seconds, defaults.webhook_retry_base_seconds * 2 ** (n - 1)) / 2
                   for n in range(1, defaults.webhook_max_attempts))
    assert defaults.webhook_max_attempts == 8
    assert 120 <= shortest <= sum(gaps) <= 300


# -- dead letters on both backends (the embedded service) ---------------------------------------------


def test_dead_letters_are_listed_and_redelivered_on_postgresql_and_sqlite(live, monkeypatch):
    monkeypatch.setattr(live.settings, "webhook_max_attempts", 2)
    receiver = Receiver()
    with live.client(live.new_tenant_key()) as client:
        job = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "x"}, "webhook_url": receiver.url}).json()
        (dead,) = _failed_deliveries(client, expected=1, timeout=90)  # two backed-off attempts; a loaded CI run is slow
        assert dead["job_id"] == job["id"] and dead["attempts"] == 2 and dead["last_error"]
        assert client.get("/v1/webhook-deliveries", params={"status": "pending"}).json() == {"data": [], "next_cursor": None}
        bad_status = problem(client.get("/v1/webhook-deliveries", params={"status": "dead"}), 422)
        bad_cursor = problem(client.get("/v1/webhook-deliveries", params={"cursor": "not-ours"}), 422)
        unknown = problem(client.post(f"/v1/webhook-deliveries/{uuid.uuid4()}/redeliver"), 404)
        receiver.up()
        try:
            assert client.post(f"/v1/webhook-deliveries/{dead['id']}/redeliver").status_code == 202
            wait_until(lambda: client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"][0]["status"] == "succeeded",
                       90, "the redelivery did not succeed")
        finally:
            receiver.down()
    assert [e["field"] for e in bad_status["errors"]] == ["query.status"]
    assert bad_cursor["errors"][0]["field"] == "cursor"
    assert "no webhook delivery" in unknown["detail"]
    assert len(receiver.requests) == 1


# -- what counts as the database being away ---------------------------------------------------------


def test_only_an_absent_database_counts_as_unavailable(tmp_path, postgres_url):
    closed_port = free_port()
    absent = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/none")
    sqlite = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    present = create_engine(postgres_url)
    errors = {}
    for name, engine, query in (("absent", absent, "SELECT 1"), ("sqlite-no-table", sqlite, "SELECT * FROM missing"),
                                ("postgres-bad-sql", present, "SELEC 1")):
        with pytest.raises(DBAPIError) as caught:
            with engine.connect() as connection:
                connection.execute(text(query))
        errors[name] = database_unavailable(caught.value)
        engine.dispose()
    assert errors == {"absent": True, "sqlite-no-table": False, "postgres-bad-sql": False}
