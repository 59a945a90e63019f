"""Boundaries the design depends on: the API process never imports torch or the worker;
publishing with a broker sends messages by task name only; plugins may scrub inputs
before anything is stored; URL inputs are fetched (when allowed) with limits."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import uuid

import pytest
import redis
from service_helpers import png_bytes, problem
from sqlalchemy import select

from twinlens import queue
from twinlens.db.models import Job
from twinlens.generic import GenericPlugin

API_PROCESS = r"""
import sys, json
from fastapi.testclient import TestClient
from twinlens.settings import Settings
from twinlens.db.session import Database
from twinlens.db.migrate import upgrade
from twinlens.services import keys, models
from twinlens.api.app import create_app
from twinlens.contract.registry import default_registry

data_dir, bundle = sys.argv[1], sys.argv[2]
settings = Settings(data_dir=data_dir)
db = Database(settings.resolved_database_url)
upgrade(db.engine)
with db.session() as session:
    _, key = keys.create_key(session, "t", admin=True)
    models.register_bundle(session, None, bundle, activate=True)
with TestClient(create_app(settings, db=db)) as client:
    auth = {"Authorization": "Bearer " + key}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/v1/plugins", headers=auth).status_code == 200
    for plugin in default_registry().all():
        plugin.describe()
    job = client.post("/v1/plugins/generic/jobs", headers=auth, data={"text": "hello"},
                      files={"image": ("a.png", open(sys.argv[3], "rb").read(), "image/png")})
    assert job.status_code == 202, job.text
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "transformers", "celery")
               or m.startswith("twinlens.worker") or m.startswith("twinlens.engine.training")
               or m.startswith("twinlens.engine.predictor"))
print(json.dumps(heavy))
"""


def test_the_api_process_never_imports_torch_or_the_worker(tmp_path, generic_bundle):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    result = subprocess.run([sys.executable, "-c", API_PROCESS, str(tmp_path / "data"), str(generic_bundle), str(image)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_with_a_broker_jobs_are_published_by_task_name_to_redis():
    client = redis.Redis(host="127.0.0.1", port=6379, db=15, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if __import__("os").environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is not reachable: {exc}")
        pytest.skip(f"Redis is not reachable: {exc}")
    plugin = f"probe_{uuid.uuid4().hex[:8]}"
    job_id = uuid.uuid4()
    previous_consumer = queue.local_consumer()
    queue.configure("redis://127.0.0.1:6379/15")
    try:
        queue.broker_ping()
        queue.publish_predict(job_id, plugin)
        raw = client.rpop(queue.predict_queue(plugin))
    finally:
        queue.configure(None)
        queue.set_local_consumer(previous_consumer)
        client.delete(queue.predict_queue(plugin))
        client.close()
    message = json.loads(raw)
    assert message["headers"]["task"] == queue.PREDICT_TASK
    assert json.loads(__import__("base64").b64decode(message["body"]))[0] == [[str(job_id)]]


def test_plugin_sanitize_runs_before_anything_is_stored(live, monkeypatch):
    def scrub(self, raw):
        raw.texts = {name: (value or "").replace("Jane Doe", "[NAME]") or None for name, value in raw.texts.items()}
        raw.metadata = {k: v for k, v in raw.metadata.items() if k != "mrn"}
        return raw

    monkeypatch.setattr(GenericPlugin, "sanitize", scrub)
    with live.client(live.new_tenant_key()) as client:
        response = client.post("/v1/plugins/generic/jobs", params={"wait": 30},
                               data={"text": "patient Jane Doe, cracked screen", "metadata": '{"mrn": "12345", "site": "a"}'})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["inputs"]["texts"] == {"text": "patient [NAME], cracked screen"}
    assert job["metadata"] == {"site": "a"}
    with live.db.session() as session:
        row = session.scalar(select(Job).where(Job.id == uuid.UUID(job["id"])))
    assert "Jane" not in json.dumps(row.texts) and "mrn" not in row.meta


class _ImageServer:
    def __init__(self, body: bytes, status: int = 200, content_type: str = "image/png"):
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits.append(self.path)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("location", "/image.png")
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_url_inputs_are_fetched_when_private_addresses_are_allowed(live, monkeypatch):
    monkeypatch.setattr(live.settings, "allow_private_urls", True)
    good, big, missing = _ImageServer(png_bytes(seed=31)), _ImageServer(b"\0" * 400_000), _ImageServer(b"", status=404)
    try:
        with live.client(live.new_tenant_key()) as client:
            fetched = client.post("/v1/plugins/generic/jobs", params={"wait": 30},
                                  json={"inputs": {"image": {"url": f"{good.url}/redirect"}, "text": "from a URL"}})
            too_big = client.post("/v1/plugins/generic/jobs", json={"inputs": {"image": {"url": f"{big.url}/x.png"}}})
            not_found = client.post("/v1/plugins/generic/jobs", json={"inputs": {"image": {"url": f"{missing.url}/x.png"}}})
    finally:
        for server in (good, big, missing):
            server.close()
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["inputs"]["image"]["media_type"] == "image/png"
    assert good.hits == ["/redirect", "/image.png"]
    problem(too_big, 413)
    assert "404" in problem(not_found, 422)["detail"]
