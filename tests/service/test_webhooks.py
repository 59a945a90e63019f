"""Signed webhooks to a real receiver on loopback, verified with the `standardwebhooks`
library; retries with backoff; every attempt listed."""

from __future__ import annotations

import http.server
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from service_helpers import problem, wait_finished
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from twinlens.services.webhooks import backoff_seconds


@dataclass
class Receiver:
    url: str
    answers: list[int]  # status per request in order; the last one repeats
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)

    def status_for(self, index: int) -> int:
        return self.answers[min(index, len(self.answers) - 1)]


@contextmanager
def receiver(answers: list[int]) -> Iterator[Receiver]:
    state = Receiver(url="", answers=answers)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            status = state.status_for(len(state.requests))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            if 200 <= status < 300:
                state.got.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/twinlens"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _deliveries(client, job_id: str, until_status: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"/v1/jobs/{job_id}/deliveries").json()["data"]
        if data and data[0]["status"] == until_status:
            return data
        time.sleep(0.1)
    raise AssertionError(f"delivery did not reach {until_status}: {data}")


def test_receiver_that_fails_twice_gets_the_signed_event_after_retries(live):
    key = live.new_tenant_key(admin=True)  # GET /v1/tenant shows the signing secret to admin keys only
    with live.client(key) as client, receiver([500, 503, 204]) as hook:
        secret = client.get("/v1/tenant").json()["webhook_secret"]
        job = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "notify me"}, "webhook_url": hook.url}).json()
        assert hook.got.wait(30), f"no successful delivery; requests so far: {len(hook.requests)}"
        finished = wait_finished(client, job["id"])
        deliveries = _deliveries(client, job["id"], "succeeded")
    assert len(hook.requests) == 3
    verifier = Webhook(secret)
    events = [verifier.verify(body, headers) for headers, body in hook.requests]  # raises if any is not genuine
    assert {headers["webhook-id"] for headers, _ in hook.requests} == {f"msg_{deliveries[0]['id'].replace('-', '')}"}
    event = events[-1]
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job["id"]
    assert event["data"]["result"]["model_version"] == finished["result"]["model_version"]
    assert event["data"]["result"]["decision"] == finished["result"]["decision"]
    assert "texts" not in event["data"]["inputs"]  # no copy of the inputs outlives retention
    assert finished["inputs"]["texts"] == {"text": "notify me"}
    (delivery,) = deliveries
    assert delivery["attempts"] == 3 and delivery["delivered_at"] and delivery["url"] == hook.url
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 204]
    assert [a["number"] for a in delivery["attempt_log"]] == [1, 2, 3]
    gaps = [b["attempted_at"] > a["attempted_at"] for a, b in zip(delivery["attempt_log"], delivery["attempt_log"][1:])]
    assert all(gaps)


def test_a_forged_or_stale_signature_does_not_verify(live):
    with live.client(live.new_tenant_key(admin=True)) as client, receiver([204]) as hook:
        secret = client.get("/v1/tenant").json()["webhook_secret"]
        client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "sign this"}, "webhook_url": hook.url})
        assert hook.got.wait(30)
    headers, body = hook.requests[0]
    Webhook(secret).verify(body, headers)
    tampered = body.replace(b"succeeded", b"failed")
    for bad_body, bad_headers, bad_secret in (
        (tampered, headers, secret),
        (body, {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}, secret),
        (body, headers, "whsec_" + "A" * 43),
    ):
        try:
            Webhook(bad_secret).verify(bad_body, bad_headers)
        except WebhookVerificationError:
            continue
        raise AssertionError("a tampered delivery verified")


def test_delivery_gives_up_after_max_attempts(live, monkeypatch):
    monkeypatch.setattr(live.settings, "webhook_max_attempts", 3)
    with live.client(live.new_tenant_key()) as client, receiver([500]) as hook:
        job = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "never lands"}, "webhook_url": hook.url}).json()
        # Three attempts 2 s and about 4 s apart (with jitter) after the worker's answer; the
        # wait is generous because on a loaded 2-core CI machine the answer itself can be slow.
        (delivery,) = _deliveries(client, job["id"], "failed", timeout=90.0)
    assert delivery["attempts"] == 3 and len(hook.requests) == 3
    assert delivery["delivered_at"] is None and delivery["next_attempt_at"] is None
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500]


def test_webhook_to_a_private_address_is_refused_when_not_allowed(live, monkeypatch):
    with live.client(live.new_tenant_key()) as client, receiver([204]) as hook:
        monkeypatch.setattr(live.settings, "allow_private_webhooks", False)
        body = problem(client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "x"}, "webhook_url": hook.url}), 422)
    assert body["errors"][0]["field"] == "webhook_url"
    assert hook.requests == []


def test_deliveries_of_a_job_without_webhook_are_empty(live):
    with live.client(live.new_tenant_key()) as client:
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "quiet"}}).json()
        assert client.get(f"/v1/jobs/{job['id']}/deliveries").json() == {"data": []}


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        delays = [backoff_seconds(attempt, 2.0, 60.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len({round(d, 6) for d in delays}) > 150  # jittered, not lockstep
