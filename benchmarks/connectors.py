"""Helpdesk connector latency on this machine: how fast a webhook is answered, and how long
a ticket takes from webhook to private note.

    python benchmarks/connectors.py [--webhooks 50] [--tickets 8]

Starts the embedded service (SQLite under a temporary folder, the in-process worker) with a
tiny support_ticket model and the tests' fake Zendesk on loopback (tests/service/
fake_helpdesks.py). Prints: the intake's p50/p95 answer time for signed webhooks (each a new
ticket; the answer is 202 before any work on it), an authenticated GET's for comparison,
the webhook-to-note time p50/max of tickets sent one at a time (fetch, photo download, OCR,
the model, the write-back), and the ratio intake / webhook-to-note. Figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "service"))
from fake_helpdesks import FakeZendesk, zendesk_created_event, zendesk_headers  # noqa: E402
from service_helpers import png_bytes  # noqa: E402

from twinlens.cli.service import EmbeddedService, train_sample_model  # noqa: E402
from twinlens.db.migrate import upgrade  # noqa: E402
from twinlens.db.session import Database  # noqa: E402
from twinlens.services import keys  # noqa: E402
from twinlens.settings import Settings  # noqa: E402

SECRET = "benchmark-signing-secret"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--webhooks", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print("training a tiny support_ticket model ...", flush=True)
        bundle = train_sample_model("support_ticket", root / "models" / "tiny", rows=24, epochs=1, tiny=True, preset="network")
        settings = Settings(data_dir=root / "data", model_roots=[root / "models"], allow_private_helpdesks=True, broker_url=None)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        with database.session() as session:
            _, key = keys.create_key(session, "bench", admin=True)
        service = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
        fake = FakeZendesk()
        try:
            _run(service.url, key, bundle, fake, args)
        finally:
            fake.close()
            service.close()


def _run(url: str, key: str, bundle: Path, fake: FakeZendesk, args) -> None:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True, "scope": "tenant"}).status_code == 201
    connector = client.post("/v1/connectors", json={
        "kind": "zendesk", "name": "bench", "base_url": fake.url, "plugin": "support_ticket", "write_back": True,
        "credentials": {"email": fake.EMAIL, "api_token": fake.TOKEN, "webhook_secret": SECRET},
        "fields": {"fault": "1", "severity": "2"}}).json()

    # Webhook to note, one ticket at a time (the first also loads the model and OCR: left out).
    trips = []
    for number in range(args.tickets + 1):
        photo = fake.attachment_url(f"p{number}.png", png_bytes((96, 96), seed=number))
        ticket = fake.add_ticket("Broken screen", f"It fell and cracked ({number})", attachments=[fake.attachment(photo, "p.png")])
        body = zendesk_created_event(ticket)
        started = time.perf_counter()
        assert client.post(connector["intake_path"], content=body, headers=zendesk_headers(SECRET, body)).status_code == 202
        while not fake.private_comments(ticket):
            time.sleep(0.01)
        if number:
            trips.append(time.perf_counter() - started)

    intake, baseline = [], []
    for number in range(args.webhooks):
        ticket = fake.add_ticket("Question", f"how do I reset it? ({number})")
        body = zendesk_created_event(ticket)
        headers = zendesk_headers(SECRET, body)
        started = time.perf_counter()
        assert client.post(connector["intake_path"], content=body, headers=headers).status_code == 202
        intake.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.get(f"/v1/connectors/{connector['id']}")
        baseline.append(time.perf_counter() - started)

    print(f"intake answer (202), {len(intake)} signed webhooks: p50 {statistics.median(intake) * 1000:.1f} ms, "
          f"p95 {_percentile(intake, 0.95) * 1000:.1f} ms")
    print(f"GET /v1/connectors/{{id}} for comparison:      p50 {statistics.median(baseline) * 1000:.1f} ms, "
          f"p95 {_percentile(baseline, 0.95) * 1000:.1f} ms")
    print(f"webhook to private note, {len(trips)} tickets:  p50 {statistics.median(trips):.2f} s, max {max(trips):.2f} s")
    print(f"ratio intake p50 / webhook-to-note p50: {statistics.median(intake) / statistics.median(trips):.4f}")


if __name__ == "__main__":
    main()
