"""A real `twinlens worker` serves its own Prometheus metrics (broker mode: the jobs run in
the worker process, so the API's /metrics never sees their batches) on loopback by
default; a port already taken costs the metrics, never the worker; with a metrics token
set a scrape must send it.

The fleet's workers get a free port, not the default 9464: this test may run twice at once
on a shared machine (each run's second worker then meets the first's port, as meant)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from fleet import Fleet, RedisServer, free_port
from recovery_fleet import wait_until
from service_db import fresh_database
from service_helpers import png_bytes, problem
from twinlens.settings import Settings
from twinlens.worker.metrics_server import serve_metrics

pytestmark = pytest.mark.slow

JOBS = 6


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, read from the kernel's table."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if int(local_port, 16) == port and state == "0A":  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


def _submit(client: httpx.Client, i: int) -> str:
    files = {"image": ("x.png", png_bytes(seed=i), "image/png")} if i % 2 else None
    response = client.post("/v1/plugins/generic/jobs", files=files, data={"text": f"metrics {i}"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.fixture
def fleet(tmp_path_factory, generic_bundle):
    root = tmp_path_factory.mktemp("metrics-fleet")
    with fresh_database() as database_url:
        redis = RedisServer(root / "redis").start()
        running = Fleet(root, database_url, redis, extra_env={"TWINLENS_WORKER_METRICS_PORT": str(free_port())}).start_api()
        try:
            with running.client() as client:
                response = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "activate": True})
                assert response.status_code == 201, response.text
            yield running
        finally:
            try:
                running.close()
            finally:
                redis.stop()


def test_a_worker_serves_its_batch_sizes_and_stage_timings_on_loopback(fleet):
    defaults = Settings(_env_file=None)
    assert (defaults.worker_metrics_port, defaults.worker_metrics_host) == (9464, "127.0.0.1")
    assert "TWINLENS_WORKER_METRICS_HOST" not in fleet.env(), "the worker runs with the default host"
    port = int(fleet.env()["TWINLENS_WORKER_METRICS_PORT"])
    fleet.start_worker("m1", "predict.generic")
    fleet.wait_worker_ready("m1", timeout=240)  # importing torch on two shared cores
    with fleet.client() as client:
        ids = [_submit(client, i) for i in range(JOBS)]
        _wait_succeeded(fleet, ids)
    samples = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    generic = (("plugin", "generic"),)

    def stage(name: str) -> tuple[tuple[str, str], ...]:
        return (("plugin", "generic"), ("stage", name))

    print(f"\nscraped from worker m1: {int(samples['twinlens_batch_size_count', generic])} batch(es) holding "
          f"{int(samples['twinlens_batch_size_sum', generic])} jobs; predict stage "
          f"{samples['twinlens_job_stage_seconds_sum', stage('predict')]:.3f} s in all")
    assert samples["twinlens_batch_size_sum", generic] == JOBS, "every job went through a batch in this worker"
    assert 1 <= samples["twinlens_batch_size_count", generic] <= JOBS
    assert samples["twinlens_job_stage_seconds_count", stage("prepare")] == JOBS
    assert samples["twinlens_job_stage_seconds_count", stage("predict")] == samples["twinlens_batch_size_count", generic]
    assert samples["twinlens_job_stage_seconds_count", stage("total")] == JOBS
    assert samples["twinlens_jobs_finished_total", (("plugin", "generic"), ("status", "succeeded"))] == JOBS
    assert _listening_addresses(port) == {"127.0.0.1"}, "loopback only unless TWINLENS_WORKER_METRICS_HOST says otherwise"

    # A second worker on this machine finds the port taken: it logs so and works on.
    fleet.start_worker("m2", "predict.generic")
    fleet.wait_worker_ready("m2", timeout=240)
    first = fleet.workers.pop("m1")
    first.terminate()
    assert first.wait(30) == 0
    with fleet.client() as client:
        late = [_submit(client, JOBS + i) for i in range(2)]
        _wait_succeeded(fleet, late)
    log = (fleet.root / "worker-m2.log").read_text(errors="replace")
    assert f"worker metrics not served on 127.0.0.1:{port}" in log
    assert fleet.jobs_done_by("m2") == 2


def _wait_succeeded(fleet: Fleet, ids: list[str]) -> None:
    with fleet.client() as client:
        def done() -> bool:
            return all(client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded" for job_id in ids)

        wait_until(done, 120, f"jobs did not succeed: {ids}", every=0.5)


def test_with_a_metrics_token_a_worker_scrape_must_send_it():
    token = "worker-metrics-token-" + "x" * 24
    settings = Settings(_env_file=None, worker_metrics_port=free_port(), metrics_token=token)
    server = serve_metrics(settings)
    assert server is not None
    try:
        url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
        anonymous = httpx.get(url, timeout=10)
        wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"}, timeout=10)
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    for refused in (anonymous, wrong):
        assert "TWINLENS_METRICS_TOKEN" in problem(refused, 401)["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"
    assert scraped.status_code == 200 and "python_info" in scraped.text


def test_production_refuses_worker_metrics_off_loopback_without_a_token():
    production = dict(_env_file=None, env="production", secrets_key=Fernet.generate_key().decode())
    assert Settings(**production).worker_metrics_host == "127.0.0.1"  # the default passes
    with pytest.raises(ValueError, match="TWINLENS_METRICS_TOKEN"):  # pydantic wraps the UnsafeSettingsError
        Settings(**production, worker_metrics_host="0.0.0.0")
    assert Settings(**production, worker_metrics_host="0.0.0.0", metrics_token="m" * 32).worker_metrics_port == 9464
    assert Settings(**production, worker_metrics_host="0.0.0.0", worker_metrics_port=0).worker_metrics_port == 0
