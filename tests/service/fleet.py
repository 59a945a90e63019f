"""A real production-shaped deployment for tests: a private redis-server, the API as a
`twinlens serve` process in broker mode, and `twinlens worker` processes, all on
loopback, sharing one PostgreSQL database and one blob directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
ADMIN_KEY = "tl_fleet_test_admin_key_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """redis-server on its own port, restartable without touching the shared instance."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(lambda: _redis_answers(self.port), 15, "redis-server did not start")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        """Data is not persisted: every queued message is lost, as after a real restart."""
        self.stop()
        self.start()


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(check, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(message)


@dataclass
class Fleet:
    root: Path
    database_url: str
    redis: RedisServer
    extra_env: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    api: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    _supervising: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TWINLENS_")}
        env.update({
            "TWINLENS_DATABASE_URL": self.database_url,
            "TWINLENS_BROKER_URL": self.redis.url,
            "TWINLENS_DATA_DIR": str(self.root / "data"),
            "TWINLENS_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            # Bundles, training data and output live under pytest's temporary folder.
            **{f"TWINLENS_{kind}_ROOTS": json.dumps([str(self.root.parent)]) for kind in ("MODEL", "DATA", "OUTPUT")},
            "TWINLENS_SWEEP_INTERVAL_SECONDS": "2",
            "TWINLENS_JOB_STALE_AFTER_SECONDS": "12",
            "TWINLENS_TASK_TIME_LIMIT_SECONDS": "10",
            "TWINLENS_TRAINING_TIME_LIMIT_SECONDS": "12",
            "TWINLENS_BROKER_VISIBILITY_TIMEOUT_SECONDS": "15",
            "TWINLENS_BATCH_DRAIN_SECONDS": "4",
            "TWINLENS_BATCH_MAX_SIZE": "8",
            "TWINLENS_JOB_MAX_ATTEMPTS": "3",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        })
        env.update(self.extra_env)
        return env

    def start_api(self, timeout: float = 60) -> "Fleet":
        log = open(self.root / "api.log", "wb")
        self.api = subprocess.Popen([str(VENV_BIN / "twinlens"), "serve", "--port", str(self.api_port), "--log-level", "warning"],
                                    env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        _wait(self._api_answers, timeout, f"the API did not start; see {self.root / 'api.log'}")
        return self

    def _api_answers(self) -> bool:
        if self.api is not None and self.api.poll() is not None:
            raise AssertionError(f"the API exited: {(self.root / 'api.log').read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, name: str, queues: str) -> subprocess.Popen:
        log = open(self.root / f"worker-{name}.log", "ab")
        process = subprocess.Popen(
            [str(VENV_BIN / "twinlens"), "worker", "--queues", queues, "--hostname", f"{name}@fleet-test", "--loglevel", "info"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers[name] = process
        return process

    def wait_worker_ready(self, name: str, timeout: float = 90) -> None:
        log = self.root / f"worker-{name}.log"
        _wait(lambda: log.exists() and " ready." in log.read_text(errors="replace"), timeout, f"worker {name} not ready: {log}")

    def kill_worker(self, name: str) -> None:
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(10)

    def supervise(self, queues: str) -> None:
        """Restart workers that die, as systemd or Kubernetes would."""
        self._supervising.set()

        def loop() -> None:
            while self._supervising.is_set():
                for name, process in list(self.workers.items()):
                    if process.poll() is not None and self._supervising.is_set():
                        self.restarts += 1
                        self.start_worker(name, queues)
                time.sleep(0.2)

        threading.Thread(target=loop, daemon=True).start()

    def jobs_done_by(self, name: str) -> int:
        """Jobs a worker finished, from Celery's own task-succeeded log lines."""
        text = (self.root / f"worker-{name}.log").read_text(errors="replace")
        return sum(int(n) for n in re.findall(r"succeeded in [0-9.]+s: \{'claimed': \d+, 'succeeded': (\d+)", text))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    def close(self) -> None:
        self._supervising.clear()
        for process in [*self.workers.values(), self.api]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.workers.values(), self.api]:
            if process is not None:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()


@contextmanager
def api_fleet(root: Path, env: dict[str, str]) -> Iterator["Fleet"]:
    """A fresh PostgreSQL database, a private Redis and the fleet's API process; workers are
    started by the test. Everything is stopped and dropped at the end."""
    from service_db import fresh_database

    with fresh_database() as database_url:
        redis = RedisServer(root / "redis").start()
        running = Fleet(root, database_url, redis, extra_env=env).start_api()
        try:
            yield running
        finally:
            running.close()
            redis.stop()


def tiny_spec_json() -> dict:
    """The CLI's tiny encoders as a JSON model spec for a training request."""
    from twinlens.cli.service import tiny_encoders

    return {name: value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            for name, value in tiny_encoders().items()}
