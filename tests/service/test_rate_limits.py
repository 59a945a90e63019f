"""Rate limits per API key and per tenant, at their defaults (20 requests per second in
bursts of 40 per key, 50 in bursts of 100 per tenant), on both stores: in the process
(the embedded service, on PostgreSQL and SQLite) and in a real Redis (`twinlens serve`
processes in broker mode, sharing one budget). A flood from one key is refused with a
429 problem and Retry-After, and limits nobody else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis
from fleet import ADMIN_KEY, Fleet, RedisServer
from service_db import fresh_database, service_settings
from service_helpers import problem

from twinlens.cli.service import EmbeddedService
from twinlens.services import keys
from twinlens.services.rate_limits import REDIS_KEY_PREFIX, Bucket, Limit, MemoryBuckets, RateLimiter, RedisBuckets
from twinlens.settings import Settings

DEFAULTS = Settings()
KEY_BURST, KEY_RATE = DEFAULTS.rate_limit_key_burst, DEFAULTS.rate_limit_key_per_second
TENANT_BURST, TENANT_RATE = DEFAULTS.rate_limit_tenant_burst, DEFAULTS.rate_limit_tenant_per_second
HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
FLOOD_THREADS = 8
FLOOD_CAP = 1500  # requests; a flood stops at its first 429


@dataclass
class Flood:
    answers: list[httpx.Response]
    seconds: float

    @property
    def allowed(self) -> int:
        return sum(answer.status_code == 200 for answer in self.answers)

    @property
    def refused(self) -> list[httpx.Response]:
        return [answer for answer in self.answers if answer.status_code == 429]


def flood(senders: list[tuple[str, str]]) -> Flood:
    """GET /v1/tenant from each (API url, key) in turn, FLOOD_THREADS requests at a time,
    until one is refused."""
    clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) for url, key in senders]
    answers: list[httpx.Response] = []
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(FLOOD_THREADS) as pool:
            while len(answers) < FLOOD_CAP and not any(answer.status_code == 429 for answer in answers):
                batch = range(len(answers), len(answers) + FLOOD_THREADS)
                answers += pool.map(lambda i: clients[i % len(clients)].get("/v1/tenant"), batch)
    finally:
        for client in clients:
            client.close()
    return Flood(answers, time.monotonic() - started)


def assert_within_budget(result: Flood, burst: int, rate: float) -> None:
    """A bucket lets through at most its burst plus what it refilled meanwhile."""
    assert result.refused, f"{len(result.answers)} requests in {result.seconds:.1f}s and none refused"
    assert result.allowed <= burst + rate * result.seconds + 1, (result.allowed, result.seconds)
    assert {answer.status_code for answer in result.answers} <= {200, 429}


def assert_refused_politely(answer: httpx.Response, scope: str, burst: int) -> None:
    body = problem(answer, 429)
    assert body["title"] == "Too Many Requests" and body["limit"] == scope
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit-Limit"] == str(burst) and answer.headers["RateLimit-Remaining"] == "0"
    assert int(answer.headers["RateLimit-Reset"]) >= 1


def new_key(url: str, admin_key: str, tenant: str | None = None) -> str:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as client:
        response = client.post("/v1/keys", json={"tenant": tenant or f"t-{uuid.uuid4().hex[:10]}"})
    assert response.status_code == 201, response.text
    return response.json()["key"]


# -- the store's arithmetic, on a clock the test turns ----------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_its_rate_up_to_its_burst_and_spends_both_or_neither():
    clock = Clock()
    store = MemoryBuckets(clock)
    key, tenant = Bucket("key:a", Limit("key", 2.0, 3)), Bucket("tenant:t", Limit("tenant", 100.0, 10))
    assert [store.take([key, tenant]).allowed for _ in range(4)] == [True, True, True, False]
    refused = store.take([key, tenant])
    assert refused.binding.limit.scope == "key" and refused.retry_after_seconds == 1
    assert refused.headers()["Retry-After"] == "1" and refused.headers()["RateLimit-Remaining"] == "0"
    # The refused requests took nothing from the tenant: 10 - 3 tokens left.
    assert store.take([Bucket("key:b", Limit("key", 2.0, 3)), tenant]).levels[1].tokens == pytest.approx(6.0)
    clock.now += 0.25  # half a token
    assert not store.take([key, tenant]).allowed
    clock.now += 0.25
    assert store.take([key, tenant]).allowed
    clock.now += 3600  # a bucket never holds more than its burst
    assert store.take([key, tenant]).levels[0].remaining == 2


# -- in the process: the embedded service, PostgreSQL and SQLite ------------------------------
def test_every_answer_to_a_key_carries_its_rate_limit(live):
    key = live.new_tenant_key()
    with live.client(key) as client:
        first = client.get("/v1/tenant")
        missing = client.get(f"/v1/jobs/{uuid.uuid4()}")
        invalid = client.get("/v1/jobs", params={"limit": 0})
    assert first.status_code == 200 and missing.status_code == 404 and invalid.status_code == 422
    assert first.headers["RateLimit-Limit"] == str(KEY_BURST)
    assert first.headers["RateLimit-Remaining"] == str(KEY_BURST - 1)
    assert int(first.headers["RateLimit-Reset"]) >= 1
    for answer in (missing, invalid):
        assert all(name in answer.headers for name in HEADERS), answer.headers
    assert int(invalid.headers["RateLimit-Remaining"]) <= KEY_BURST - 1  # it refills as fast as this client asks
    with httpx.Client(base_url=live.url) as anonymous:
        assert "RateLimit-Limit" not in anonymous.get("/livez").headers


def test_a_keys_flood_is_refused_and_limits_no_other_key_or_tenant(live):
    flooding, bystander = live.new_tenant_key(), live.new_tenant_key()
    result = flood([(live.url, flooding)])
    assert_within_budget(result, KEY_BURST, KEY_RATE)
    assert_refused_politely(result.refused[0], "key", KEY_BURST)
    with live.client(bystander) as client:
        other = client.get("/v1/tenant")
    assert other.status_code == 200 and other.headers["RateLimit-Remaining"] == str(KEY_BURST - 1)
    time.sleep(int(result.refused[0].headers["Retry-After"]))
    with live.client(flooding) as client:
        assert client.get("/v1/tenant").status_code == 200  # Retry-After was enough


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def small_tenant_limit(request, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The embedded service with a tenant limit of 5 per second in bursts of 10: the
    default, 50 per second, is more than this two-core test machine serves (about 44 per
    second measured on SQLite), so a flood could never meet it here."""
    data_dir = tmp_path_factory.mktemp(f"tenant-limit-{request.param}")
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{data_dir / 'db.sqlite'}"
    settings = service_settings(data_dir, url, rate_limit_tenant_per_second=5.0, rate_limit_tenant_burst=10)
    service = EmbeddedService(settings, port=0).build(migrate=True).start()
    with service.database.session() as session:
        _, admin_key = keys.create_key(session, f"admin-{uuid.uuid4().hex[:8]}", platform_admin=True)
    try:
        yield service.url, admin_key
    finally:
        service.close()


def test_a_tenants_keys_together_meet_the_tenant_limit(small_tenant_limit):
    url, admin_key = small_tenant_limit
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    # Three keys of 40 tokens each, one tenant of 10: the tenant's bucket empties first.
    keys_of_tenant = [new_key(url, admin_key, tenant) for _ in range(3)]
    result = flood([(url, key) for key in keys_of_tenant])
    assert_within_budget(result, 10, 5.0)
    assert_refused_politely(result.refused[0], "tenant", 10)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {new_key(url, admin_key)}"}) as client:
        assert client.get("/v1/tenant").status_code == 200  # another tenant: untouched


# -- in Redis: `twinlens serve` in broker mode -----------------------------------------------
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A private redis-server: the outage drill stops it without touching the shared one."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def two_apis(tmp_path_factory, redis_server) -> Iterator[tuple[Fleet, Fleet]]:
    """Two API processes on one database and one Redis, as behind a load balancer."""
    root = tmp_path_factory.mktemp("rate-limit-fleet")
    with fresh_database() as url:
        (root / "a").mkdir()
        (root / "b").mkdir()
        first = Fleet(root / "a", url, redis_server)
        second = Fleet(root / "b", url, redis_server)
        try:
            first.start_api()
            second.start_api()
            yield first, second
        finally:
            first.close()
            second.close()


def test_redis_buckets_spend_both_or_neither_and_expire_when_full(redis_server):
    store = RedisBuckets(redis_server.url)
    name = uuid.uuid4().hex
    key, tenant = Bucket(f"key:{name}", Limit("key", 1.0, 2)), Bucket(f"tenant:{name}", Limit("tenant", 1.0, 5))
    try:
        assert [store.take([key, tenant]).allowed for _ in range(3)] == [True, True, False]
        refused = store.take([key, tenant])
        assert refused.binding.limit.scope == "key" and refused.headers()["Retry-After"] == "1"
        levels = redis.Redis.from_url(redis_server.url)
        assert float(levels.hget(REDIS_KEY_PREFIX + tenant.name, "tokens")) == pytest.approx(3.0, abs=0.1)
        assert 0 < levels.pttl(REDIS_KEY_PREFIX + tenant.name) <= (5 - 3 + 1) * 1000 + 100  # gone once full again
    finally:
        store.close()


def test_rate_limiter_uses_redis_in_broker_mode_and_the_process_otherwise(redis_server):
    assert isinstance(RateLimiter.from_settings(Settings(broker_url=redis_server.url)).store, RedisBuckets)
    assert isinstance(RateLimiter.from_settings(Settings(broker_url=None)).store, MemoryBuckets)


def test_two_api_processes_spend_one_budget_in_redis(two_apis):
    first, second = two_apis
    flooding = new_key(first.url, ADMIN_KEY)
    bystander = new_key(second.url, ADMIN_KEY)
    # Each process gets every other request; with a budget each, twice the burst would pass.
    result = flood([(first.url, flooding), (second.url, flooding)])
    assert_within_budget(result, KEY_BURST, KEY_RATE)
    assert_refused_politely(result.refused[0], "key", KEY_BURST)
    for api in (first, second):
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {bystander}"}) as client:
            assert client.get("/v1/tenant").status_code == 200


def test_a_redis_outage_lets_requests_through_unlimited_until_it_is_back(two_apis, redis_server):
    first, _ = two_apis
    key = new_key(first.url, ADMIN_KEY)
    with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        redis_server.stop()
        try:
            during = client.get("/v1/tenant")
        finally:
            redis_server.start()
        after = client.get("/v1/tenant")
    assert during.status_code == 200 and "RateLimit-Limit" not in during.headers
    assert after.status_code == 200 and after.headers["RateLimit-Limit"] == str(KEY_BURST)
