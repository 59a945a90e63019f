"""`twinlens serve`, `twinlens keys create` and `twinlens demo` as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from service_helpers import problem

TWINLENS = str(Path(sys.executable).with_name("twinlens"))


OPERATOR_TOKEN = "operator-token-for-the-cli-service-tests-0123"  # /readyz details need it


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINLENS_")}
    env.update(TWINLENS_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2", NO_COLOR="1", COLUMNS="200",
               TWINLENS_METRICS_TOKEN=OPERATOR_TOKEN)
    return env


def test_serve_runs_the_api_with_an_in_process_worker_and_stops_on_sigint(tmp_path):
    process = subprocess.Popen([TWINLENS, "serve", "--port", "0", "--log-level", "warning"], env=_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)", banner).group(1)
        assert "in-process worker" in banner and "sqlite" in banner
        deadline = time.monotonic() + 60
        while True:
            try:
                live = httpx.get(f"{url}/livez", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        assert live.json()["status"] == "ok"
        assert "checks" not in problem(httpx.get(f"{url}/readyz", timeout=5), 503)  # details for operators only
        not_ready = problem(httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=5), 503)
        assert not_ready["checks"]["worker"]["ok"] is True
        assert not_ready["checks"]["models"]["ok"] is False  # nothing registered yet
        key = subprocess.run([TWINLENS, "keys", "create", "--tenant", "acme"], env=_env(tmp_path),
                             capture_output=True, text=True, timeout=120)
        assert key.returncode == 0, key.stderr
        plain = key.stdout.strip()
        assert plain.startswith("tl_") and "whsec_" in key.stderr
        tenant = httpx.get(f"{url}/v1/tenant", headers={"Authorization": f"Bearer {plain}"}, timeout=5)
        assert tenant.json()["name"] == "acme"
        assert (tmp_path / "twinlens.db").exists()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0, process.stderr.read()


def test_demo_trains_serves_and_prints_sample_results(tmp_path):
    command = [TWINLENS, "demo", "--exit-after-samples", "--tiny", "--epochs", "1", "--train-rows", "40",
               "--samples", "2", "--port", "0", "--data-dir", str(tmp_path / "demo")]
    result = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "yet: training one on" in out and "held-out" in out and "sample jobs right" in out
    assert re.search(r"serving on http://127\.0\.0\.1:\d+", out)
    assert re.search(r"Web console, logged in as tenant demo .*: http://127\.0\.0\.1:\d+/console/login/[\w-]{40,}\n", out), out
    jobs = re.findall(r"job [0-9a-f]{8} (\w+)\s+(\S+@[0-9a-f]{12})", out)
    assert len(jobs) == 2 and all(status == "succeeded" for status, _ in jobs), out
    assert "decision:" in out
    again = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "yet: training one on" not in again.stdout  # the registered model is reused
    assert {version for _, version in re.findall(r"job [0-9a-f]{8} (\w+)\s+(\S+@[0-9a-f]{12})", again.stdout)} == {jobs[0][1]}
