"""Worker heartbeats: how the fleet knows that a worker process is alive and what it holds.

Each process that claims jobs has a name (`worker_name`), recorded on every job it claims.
In broker mode a thread keeps a key in the broker's Redis fresh, `twinlens:worker:<name>`:
it expires `worker_heartbeat_ttl_seconds` after the last beat, is rewritten every
`worker_heartbeat_interval_seconds`, and lists the jobs the process holds right now. The
sweep reads the keys (`HeartbeatReader`): a running job whose worker has no key (the
process died: SIGKILL, out of memory, a lost machine) or whose key does not list it (the
task that held it failed) is queued again, long before `job_stale_after_seconds`.

A Redis restarted a moment ago holds no keys yet, live workers' included, so the sweep
judges no worker until Redis has been up for a whole TTL.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

from twinlens.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "twinlens:worker:{name}"
REDIS_TIMEOUT_SECONDS = 5.0


class HeldJobs:
    """The jobs this process has claimed and not yet let go of (a count per id, so two
    threads of one process holding the same id cannot drop each other's hold)."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def hold(self, job_ids: Iterable[Any]) -> None:
        with self._lock:
            self._held.update(str(job_id) for job_id in job_ids)

    def release(self, job_ids: Iterable[Any]) -> None:
        with self._lock:
            self._held.subtract(str(job_id) for job_id in job_ids)
            for job_id in [job_id for job_id, count in self._held.items() if count <= 0]:
                del self._held[job_id]

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._held)


HELD = HeldJobs()

_node_name: str | None = None
_names: dict[int, str] = {}  # per pid: a forked pool process is a worker of its own
_heartbeats: dict[int, "Heartbeat"] = {}
_lock = threading.Lock()


def set_node_name(name: str) -> None:
    """The Celery node name (w1@host), so that operators can tell whose jobs are whose."""
    global _node_name
    _node_name = name


def worker_name() -> str:
    """This process's name: node, pid and a random part (pids repeat across containers)."""
    pid = os.getpid()
    with _lock:
        if pid not in _names:
            _names[pid] = f"{_node_name or socket.gethostname()}#{pid}.{secrets.token_hex(3)}"
        return _names[pid]


def current_worker(settings: Settings) -> str:
    """The name to claim jobs under; in broker mode the heartbeat beats before it returns,
    so no claim is ever recorded for a worker the sweep cannot see."""
    name = worker_name()
    if settings.broker_url:
        pid = os.getpid()
        with _lock:
            if pid not in _heartbeats:
                _heartbeats[pid] = Heartbeat(settings, name, HELD).start()
    return name


def stop_heartbeat() -> None:
    """On a clean exit: the key goes at once (whatever is still held is then recovered)."""
    with _lock:
        heartbeat = _heartbeats.pop(os.getpid(), None)
    if heartbeat is not None:
        heartbeat.stop()


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)


class Heartbeat:
    def __init__(self, settings: Settings, name: str, held: HeldJobs):
        self.name = name
        self.key = HEARTBEAT_KEY.format(name=name)
        self.held = held
        self.interval = settings.worker_heartbeat_interval_seconds
        self.ttl_ms = int(settings.worker_heartbeat_ttl_seconds * 1000)
        self._client = _redis(settings.broker_url)
        self._stop = threading.Event()

    def start(self) -> "Heartbeat":
        self._beat_logged()
        threading.Thread(target=self._loop, name="twinlens-heartbeat", daemon=True).start()
        return self

    def beat(self) -> None:
        value = json.dumps({"pid": os.getpid(), "jobs": self.held.ids()})
        self._client.set(self.key, value, px=self.ttl_ms)

    def stop(self) -> None:
        self._stop.set()
        try:
            self._client.delete(self.key)
        except Exception:
            log.warning("could not remove heartbeat %s; it lapses by itself", self.key)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat_logged()

    def _beat_logged(self) -> None:
        try:
            self.beat()
        except Exception as exc:  # Redis restarting: the next beat tries again
            log.warning("heartbeat %s failed: %s", self.key, exc)


class HeartbeatReader:
    """What the heartbeats say about some workers: the jobs each living one holds."""

    def __init__(self, settings: Settings):
        self.ttl = settings.worker_heartbeat_ttl_seconds
        self._client = _redis(settings.broker_url)

    def __call__(self, names: Collection[str]) -> dict[str, set[str]] | None:
        """Living workers among `names` with their held job ids; None when Redis restarted
        too recently for a missing key to mean a dead worker."""
        names = list(names)
        if not names:
            return {}
        # Redis counts its uptime in whole clock seconds: it may say 1 a few milliseconds
        # after a start that crossed a second's boundary, hence one second of margin.
        if self._client.info("server")["uptime_in_seconds"] < self.ttl + 1:
            return None
        values = self._client.mget([HEARTBEAT_KEY.format(name=name) for name in names])
        return {name: set(json.loads(value)["jobs"]) for name, value in zip(names, values) if value is not None}

    def close(self) -> None:
        self._client.close()
