"""Log lines of a real `twinlens serve` process: with TWINLENS_ENV=production every line on
stderr is one JSON object (timestamp, level, logger, message, and the request id, tenant,
job id, model version and duration where known); in development the same fields follow
plain text lines. Each mode serves one real job over HTTP (production on PostgreSQL,
development on the embedded SQLite default)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from service_db import fresh_database
from service_helpers import wait_finished

TWINLENS = str(Path(sys.executable).with_name("twinlens"))
ADMIN_KEY = "tl_" + secrets.token_urlsafe(32)


def _served_job(tmp_path: Path, bundle: Path, env: str, database_url: str | None = None) -> tuple[list[str], str, dict]:
    """Start `twinlens serve`, send one job (waiting for it) with our own request id, stop
    the server; its stderr lines, the request id and the finished job."""
    settings_env = {
        "TWINLENS_ENV": env, "TWINLENS_DATA_DIR": str(tmp_path / "data"), "TWINLENS_SECRETS_KEY": Fernet.generate_key().decode(),
        "TWINLENS_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "TWINLENS_MODEL_BUNDLE_DIRS": json.dumps([str(bundle)]),
        "TWINLENS_MODEL_ROOTS": json.dumps([str(bundle.parent)]), **({"TWINLENS_DATABASE_URL": database_url} if database_url else {}),
    }
    stdout, stderr = tmp_path / f"{env}.out", tmp_path / f"{env}.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        server = subprocess.Popen([TWINLENS, "serve", "--port", "0"], stdout=out, stderr=err,
                                  env={**os.environ, **settings_env}, cwd=tmp_path)
    try:
        url = _url_when_up(server, stdout, stderr)
        request_id = f"test-{uuid.uuid4().hex}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60) as client:
            response = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "a red square"}},
                                   headers={"X-Request-ID": request_id})
            assert response.status_code in (200, 202), response.text  # 202: still running after the server's wait cap
            assert response.headers["x-request-id"] == request_id
            job = wait_finished(client, response.json()["id"])
        assert job["status"] == "succeeded", job
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: the worker finishes and logs its job
        server.wait(60)
    job["post_status"] = response.status_code
    return [line for line in stderr.read_text().splitlines() if line.strip()], request_id, job


def _url_when_up(server: subprocess.Popen, stdout: Path, stderr: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"twinlens serve exited: {stderr.read_text()}"
        printed = re.search(r"TwinLens API on (http://\S+)", stdout.read_text())
        if printed and _answers(printed.group(1)):
            return printed.group(1)
        time.sleep(0.2)
    raise AssertionError(f"twinlens serve did not come up: {stderr.read_text()}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_production_logs_are_one_json_object_per_line_with_request_and_job_context(tmp_path, generic_bundle):
    with fresh_database() as url:
        lines, request_id, job = _served_job(tmp_path, generic_bundle, "production", url)
    records = [json.loads(line) for line in lines]  # a line that is not JSON fails here
    assert all(isinstance(record, dict) and {"timestamp", "level", "logger", "message"} <= set(record) for record in records)
    assert all(datetime.fromisoformat(record["timestamp"]).utcoffset().total_seconds() == 0 for record in records)
    assert any(record["logger"].startswith("uvicorn") for record in records)  # uvicorn's own lines are JSON too
    (request,) = [r for r in records if r.get("request_id") == request_id and r["logger"] == "twinlens.api.requests"]
    assert (request["level"], request["route"], request["status"], request["tenant"]) == ("INFO", "/v1/plugins/{name}/jobs", job["post_status"], "default")
    assert request["duration_ms"] > 0
    (finished,) = [r for r in records if r.get("job_id") == job["id"] and r["message"] == "job succeeded"]
    assert finished["model_version"] == job["model_version"]["version"] and finished["duration_ms"] > 0
    assert finished["logger"] == "twinlens.worker.pipeline"


def test_development_logs_are_plain_text_with_the_same_context(tmp_path, generic_bundle):
    lines, request_id, job = _served_job(tmp_path, generic_bundle, "development")
    assert not any(line.startswith("{") for line in lines), lines
    (request,) = [line for line in lines if f"request_id={request_id}" in line]
    assert re.search(rf" INFO twinlens\.api\.requests: POST /v1/plugins/\{{name\}}/jobs {job['post_status']} \[.*tenant=default.*duration_ms=[0-9.]+",
                     request), request
    (finished,) = [line for line in lines if f"job_id={job['id']}" in line and "job succeeded" in line]
    assert f"model_version={job['model_version']['version']}" in finished
