"""Real deployments for the recovery tests: a private PostgreSQL cluster and redis-server
that a test may stop and start (the shared ones serve other tests meanwhile), and a fleet
whose API and workers keep the recovery defaults (sweep, heartbeat, stale timeout)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from fleet import VENV_BIN, Fleet, _wait, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# What tests/service/fleet.py shortens for its own tests; the recovery tests keep the defaults.
SHORTENED_FOR_FLEET_TESTS = (
    "TWINLENS_SWEEP_INTERVAL_SECONDS",
    "TWINLENS_JOB_STALE_AFTER_SECONDS",
    "TWINLENS_TASK_TIME_LIMIT_SECONDS",
    "TWINLENS_TRAINING_TIME_LIMIT_SECONDS",
    "TWINLENS_BROKER_VISIBILITY_TIMEOUT_SECONDS",
    "TWINLENS_BATCH_DRAIN_SECONDS",
    "TWINLENS_BATCH_MAX_SIZE",
    "TWINLENS_JOB_MAX_ATTEMPTS",
)


class PrivatePostgres:
    """A PostgreSQL 15 cluster of its own (initdb into a temporary folder, a free port),
    stoppable without touching the shared server on 5432."""

    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's folder: the server runs as `postgres`, which cannot enter root's.
        self.root = Path(tempfile.mkdtemp(prefix="twinlens-drill-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _run(self, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def init(self) -> "PrivatePostgres":
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        return self.start()

    def start(self) -> "PrivatePostgres":
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")
        return self

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as in a restart or a failover."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop()
        except subprocess.SubprocessError:
            # An immediate shutdown: the cluster must not outlive its test, even half-stopped.
            os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class DefaultsFleet(Fleet):
    """The fleet of tests/service/fleet.py with the recovery settings left at their
    defaults; each worker gets a metrics port of its own (two cannot share the default)."""

    metrics_ports: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = super().env()
        for key in SHORTENED_FOR_FLEET_TESTS:
            if key not in self.extra_env:
                env.pop(key, None)
        return env

    def start_worker(self, name: str, queues: str) -> subprocess.Popen:
        port = self.metrics_ports.setdefault(name, free_port())
        log = open(self.root / f"worker-{name}.log", "ab")
        process = subprocess.Popen(
            [str(VENV_BIN / "twinlens"), "worker", "--queues", queues, "--hostname", f"{name}@fleet-test", "--loglevel", "info"],
            env={**self.env(), "TWINLENS_WORKER_METRICS_PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers[name] = process
        return process

    def sql(self, query: str, params=()) -> list[tuple]:
        url = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as connection:
            return connection.execute(query, params).fetchall()

    def wait_finished(self, ids: list[str], timeout: float) -> None:
        def finished() -> bool:
            return self.sql("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status IN ('queued', 'running')", (ids,))[0][0] == 0

        try:
            _wait(finished, timeout, "")
        except AssertionError:
            statuses = self.sql("SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (ids,))
            raise AssertionError(f"jobs still open after {timeout}s: {statuses}") from None


@dataclass
class JobCounts:
    """What a drill reports: jobs submitted, succeeded, and written more than once."""

    submitted: int
    succeeded: int
    duplicated: int
    rerun: int  # succeeded on a second or later attempt (recovered), still written once

    def line(self, drill: str) -> str:
        return (f"{drill}: submitted {self.submitted}, succeeded {self.succeeded}, duplicated {self.duplicated}, "
                f"re-run after recovery {self.rerun}")


def job_counts(fleet: DefaultsFleet, ids: list[str]) -> JobCounts:
    rows = fleet.sql(
        "SELECT j.status, j.attempts, (SELECT count(*) FROM results r WHERE r.job_id = j.id) FROM jobs j WHERE j.id = ANY(%s)",
        (ids,),
    )
    return JobCounts(
        submitted=len(ids),
        succeeded=sum(1 for status, _, _ in rows if status == "succeeded"),
        duplicated=sum(results - 1 for _, _, results in rows if results > 1),
        rerun=sum(1 for status, attempts, _ in rows if status == "succeeded" and attempts > 1),
    )


def wait_until(check, timeout: float, message: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(message)
