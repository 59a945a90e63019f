"""Rate limits per API key and per tenant, as token buckets.

A bucket holds at most `burst` tokens and refills at `per_second`; a request spends one
token from its key's bucket and one from its tenant's, both or neither, so a request one
limit refuses costs the other nothing. A tenant's several keys share its bucket; another
tenant's requests never touch it.

Two stores behind one interface:
- Redis (broker mode, several API processes): one Lua script reads, refills and spends
  both buckets atomically, timed by the Redis server's clock, so every API process spends
  from the same budget and their clocks need not agree;
- this process (the embedded default): a dict under a lock, timed by the monotonic clock.

When Redis cannot be reached the request is let through (and logged): a limiter outage
must not take the API down with it, and the broker, on the same Redis, is then failing
loudly anyway.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from twinlens.services.errors import ServiceError
from twinlens.services.keys import Principal
from twinlens.settings import Settings

log = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "twinlens:ratelimit:"
# A limiter that waits on Redis longer than this lets the request through instead.
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Limit:
    scope: str  # "key" or "tenant": which limit a client ran into
    per_second: float
    burst: int


@dataclass(frozen=True)
class Bucket:
    """One bucket a request spends from: the store's key and its limit."""

    name: str
    limit: Limit


@dataclass(frozen=True)
class BucketLevel:
    """A bucket's tokens right after a request (spent from, or refused)."""

    limit: Limit
    tokens: float

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens))

    @property
    def seconds_to_next_token(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.limit.per_second)

    @property
    def seconds_to_full(self) -> float:
        return max(0.0, (self.limit.burst - self.tokens) / self.limit.per_second)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    levels: tuple[BucketLevel, ...]

    @property
    def binding(self) -> BucketLevel:
        """The bucket the client should pace itself by: the one with the fewest requests
        left (a refusing one when refused: only those have none), the slower to refill on a tie."""
        return min(self.levels, key=lambda level: (level.remaining, -level.seconds_to_next_token))

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds until every bucket has a token again (at least 1 when refused)."""
        if self.allowed:
            return 0
        return max(1, math.ceil(max(level.seconds_to_next_token for level in self.levels)))

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit / -Remaining / -Reset of the binding bucket (Reset: seconds until
        it is full again), plus Retry-After when refused."""
        binding = self.binding
        headers = {
            "RateLimit-Limit": str(binding.limit.burst),
            "RateLimit-Remaining": str(binding.remaining),
            "RateLimit-Reset": str(math.ceil(binding.seconds_to_full)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class RateLimited(ServiceError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, decision: Decision):
        refused = decision.binding.limit
        super().__init__(
            f"over the {refused.scope} rate limit of {refused.per_second:g} requests per second "
            f"(bursts of {refused.burst}); retry after {decision.retry_after_seconds} s",
            limit=refused.scope,
        )
        self.headers = decision.headers()


def spend(levels: Sequence[float]) -> tuple[bool, list[float]]:
    """Take one token from each bucket if every one has a token, else take none."""
    if all(tokens >= 1.0 for tokens in levels):
        return True, [tokens - 1.0 for tokens in levels]
    return False, list(levels)


def refilled(tokens: float, elapsed: float, limit: Limit) -> float:
    return min(float(limit.burst), tokens + max(0.0, elapsed) * limit.per_second)


class MemoryBuckets:
    """Buckets in this process, for the embedded single-process service."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, buckets: Sequence[Bucket]) -> Decision:
        with self._lock:
            now = self._clock()
            levels = [self._level(bucket, now) for bucket in buckets]
            allowed, after = spend(levels)
            for bucket, tokens in zip(buckets, after):
                self._buckets[bucket.name] = (tokens, now)
        return Decision(allowed, tuple(BucketLevel(bucket.limit, tokens) for bucket, tokens in zip(buckets, after)))

    def _level(self, bucket: Bucket, now: float) -> float:
        tokens, at = self._buckets.get(bucket.name, (float(bucket.limit.burst), now))
        return refilled(tokens, now - at, bucket.limit)


# KEYS: the buckets' hashes; ARGV: per_second and burst of each, in KEYS' order. The same
# arithmetic as `refilled` and `spend` above (a script cannot call Python).
TAKE_SCRIPT = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now_s
  levels[i] = math.min(burst, tokens + math.max(0, now_s - at) * rate)
  if levels[i] < 1 then allowed = 0 end
end
local answer = {allowed}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  if allowed == 1 then levels[i] = levels[i] - 1 end
  redis.call('HSET', key, 'tokens', levels[i], 'at', now_s)
  -- a bucket left alone refills to full; after that it is the same as no bucket at all
  redis.call('PEXPIRE', key, math.ceil((burst - levels[i]) / rate * 1000) + 1000)
  -- numbers would come back as integers: send the fractions as text
  answer[i + 1] = tostring(levels[i])
end
return answer
"""


class RedisBuckets:
    """Buckets in Redis, shared by every API process of a deployment."""

    def __init__(self, url: str):
        self._client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                            socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
        self._script = self._client.register_script(TAKE_SCRIPT)

    def take(self, buckets: Sequence[Bucket]) -> Decision:
        arguments = [value for bucket in buckets for value in (bucket.limit.per_second, bucket.limit.burst)]
        allowed, *levels = self._script(keys=[REDIS_KEY_PREFIX + bucket.name for bucket in buckets], args=arguments)
        return Decision(bool(int(allowed)), tuple(BucketLevel(bucket.limit, float(tokens)) for bucket, tokens in zip(buckets, levels)))

    def close(self) -> None:
        self._client.close()


class RateLimiter:
    """The limits of settings, applied to authenticated callers."""

    def __init__(self, settings: Settings, store: MemoryBuckets | RedisBuckets):
        self.key_limit = Limit("key", settings.rate_limit_key_per_second, settings.rate_limit_key_burst)
        self.tenant_limit = Limit("tenant", settings.rate_limit_tenant_per_second, settings.rate_limit_tenant_burst)
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> "RateLimiter":
        """Redis when the broker is Redis (every API process shares it), else this process."""
        broker = settings.broker_url or ""
        store = RedisBuckets(broker) if broker.startswith(("redis://", "rediss://", "unix://")) else MemoryBuckets()
        return cls(settings, store)

    def check(self, principal: Principal) -> Decision | None:
        """Spend this request's tokens; raise RateLimited when it is over a limit. None
        when the store could not be asked (the request goes through unlimited)."""
        buckets = (Bucket(f"key:{principal.key_id}", self.key_limit), Bucket(f"tenant:{principal.tenant_id}", self.tenant_limit))
        try:
            decision = self.store.take(buckets)
        except redis.RedisError as exc:
            log.warning("rate limits not applied: Redis did not answer (%s: %s)", exc.__class__.__name__, exc)
            return None
        if not decision.allowed:
            raise RateLimited(decision)
        return decision

    def close(self) -> None:
        if isinstance(self.store, RedisBuckets):
            self.store.close()
