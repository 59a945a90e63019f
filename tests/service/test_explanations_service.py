"""Explanations and zero-shot answers through the real service (HTTP, PostgreSQL, the
in-process worker): a support ticket job comes back with a heatmap and word weights, its
overlay is a PNG of the input image; another tenant cannot read either; the retention
purge takes the explanation with the inputs; a fresh tenant with no model gets a
calibrated zero-shot answer that goes to review until a trained model is activated, and
a plugin without label descriptions still answers 409."""

from __future__ import annotations

import io
import random
from datetime import timedelta

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from service_db import fresh_database, service_settings
from service_helpers import problem, wait_finished
from twinlens.cli.service import EmbeddedService, tiny_encoders
from twinlens.contract.plugin import Dataset
from twinlens.contract.registry import get_plugin
from twinlens.contract.sample import Sample
from twinlens.db.base import utcnow
from twinlens.db.explanation_tables import ExplanationHeatmap, JobExplanation
from twinlens.db.migrate import upgrade
from twinlens.db.models import Job
from twinlens.db.session import Database
from twinlens.services import execution, keys

TICKET = "My laptop battery is swollen and the screen lifts off the frame"
OCR = "BATTERY WARNING 0x2F"


def _photo(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(60, 200, (64, 80, 3), dtype=np.uint8))
    image.paste(Image.new("RGB", (24, 24), (230, 40, 40)), (10, 12))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _tiny_ticket_bundle(out_dir):
    """A tiny network for support_ticket trained on made-up rows (no OCR: it is given)."""
    from twinlens.engine.training import train_model

    plugin = get_plugin("support_ticket")
    schema = plugin.label_schema()
    rng = random.Random(0)
    samples = []
    for i in range(24):
        fault = rng.choice(schema.task("fault").label_names)
        severity = rng.choice(schema.task("severity").label_names)
        image = Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8))
        samples.append(Sample(image=image, texts={"text": f"ticket {i} about {fault.replace('_', ' ')}", "ocr": f"code {i % 7}"},
                              labels={"fault": fault, "severity": severity}, id=str(i)))
    spec = plugin.default_model_spec().model_copy(update=tiny_encoders())
    config = plugin.training_defaults().model_copy(update={"epochs": 1, "seed": 0, "progress": False})
    train_model(plugin, Dataset(samples, schema), out_dir=out_dir, spec=spec, config=config)
    return out_dir


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("explanations")
    with fresh_database() as url:
        # Few calibration rows: the zero-shot path runs whole (generate, OCR, fit) in seconds.
        settings = service_settings(root / "data", url, zero_shot_calibration_rows=8)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        with database.session() as session:
            _, owner = keys.create_key(session, "explain-owner", admin=True)
            _, other = keys.create_key(session, "explain-other", admin=True)
            _, fresh = keys.create_key(session, "explain-fresh")
        running = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
        bundle = _tiny_ticket_bundle(settings.data_dir / "models" / "ticket")
        clients = {name: httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"}, timeout=180)
                   for name, key in (("owner", owner), ("other", other), ("fresh", fresh))}
        registered = clients["owner"].post("/v1/models", json={"bundle_path": str(bundle), "activate": True})
        assert registered.status_code == 201, registered.text
        assert registered.json()["scope"] == "tenant"  # the owner's own model: other tenants have none
        try:
            yield {"clients": clients, "database": database, "settings": settings, "bundle": bundle}
        finally:
            for client in clients.values():
                client.close()
            running.close()
            database.dispose()


@pytest.fixture(scope="module")
def explained_job(service):
    response = service["clients"]["owner"].post(
        "/v1/plugins/support_ticket/jobs", params={"wait": 120, "explain": "true"},
        files={"image": ("ticket.png", _photo(), "image/png")}, data={"text": TICKET, "ocr": OCR})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded", job
    return job


def test_a_ticket_job_returns_a_heatmap_and_word_weights(service, explained_job):
    client = service["clients"]["owner"]
    response = client.get(f"/v1/jobs/{explained_job['id']}/explanation")
    assert response.status_code == 200, response.text
    explanation = response.json()
    assert explanation["reason"] in ("requested", "needs_review") and explanation["explained_by"] == "network"
    assert explanation["model_version"] == explained_job["model_version"]["version"]
    fault = explanation["heads"]["fault"]
    assert fault["label"] == explained_job["result"]["heads"]["fault"]["label"]
    assert fault["heatmap"]["method"] == "grad-cam" and fault["heatmap"]["rows"] >= 1
    words = fault["words"]["text"]
    assert [w["text"] for w in words] == TICKET.split()  # the words the user wrote
    assert max(abs(w["weight"]) for w in words) == pytest.approx(1.0)
    assert [w["text"] for w in fault["words"]["ocr"]] == OCR.split()
    assert set(explanation["heads"]) == {"fault", "severity"}

    overlay = client.get(fault["heatmap"]["overlay_url"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(overlay.content))
    assert image.size == (80, 64)  # drawn over the stored input image
    problem(client.get(f"/v1/jobs/{explained_job['id']}/heatmap.png", params={"head": "nope"}), 404)


def test_another_tenant_cannot_read_the_explanation(service, explained_job):
    other = service["clients"]["other"]
    problem(other.get(f"/v1/jobs/{explained_job['id']}/explanation"), 404)
    problem(other.get(f"/v1/jobs/{explained_job['id']}/heatmap.png", params={"head": "fault"}), 404)


def test_a_fresh_tenant_gets_a_calibrated_zero_shot_answer_for_review(service):
    client = service["clients"]["fresh"]
    response = client.post("/v1/plugins/support_ticket/jobs", json={"inputs": {"text": TICKET, "ocr": OCR}})
    assert response.status_code == 202, response.text  # not 409: the plugin's labels have descriptions
    # The first zero-shot job waits for the calibration (generate, OCR, fit) on the worker.
    job = wait_finished(client, response.json()["id"], timeout=240)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["explanation"]["zero_shot"] is True
    assert "zero-shot" in job["model_version"]["version"]
    assert result["decision"]["needs_review"] is True
    calibration = result["explanation"]["extras"]["zero_shot"]["calibration"]
    assert set(calibration["temperatures"]) == {"fault", "severity"}  # fitted on generated samples
    assert result["heads"]["fault"]["label"] == "swollen_battery"
    # needs_review: explained, and the explanation says there is no trained network.
    explanation = client.get(f"/v1/jobs/{job['id']}/explanation").json()
    assert explanation["explained_by"] == "none" and "zero-shot" in explanation["notes"][0]


def test_once_a_trained_model_is_active_jobs_use_it(service):
    client = service["clients"]["other"]  # an admin of a tenant with no model yet
    before = client.post("/v1/plugins/support_ticket/jobs", json={"inputs": {"text": TICKET}})
    assert "zero-shot" in before.json()["model_version"]["version"]
    registered = client.post("/v1/models", json={"bundle_path": str(service["bundle"]), "activate": True})
    assert registered.status_code == 201, registered.text
    after = client.post("/v1/plugins/support_ticket/jobs", json={"inputs": {"text": TICKET}})
    assert after.json()["model_version"]["id"] == registered.json()["id"]
    finished = wait_finished(client, after.json()["id"], timeout=120)
    assert finished["status"] == "succeeded" and finished["result"]["explanation"]["zero_shot"] is False


def test_a_plugin_without_label_descriptions_still_needs_a_model(service):
    response = service["clients"]["fresh"].post("/v1/plugins/generic/jobs", json={"inputs": {"text": "hello"}})
    assert problem(response, 409)["detail"].startswith("no active model for plugin 'generic'")


def test_the_retention_purge_takes_the_explanation_with_the_inputs(service, explained_job):
    database = service["database"]
    with database.session() as session:
        job = session.get(Job, explained_job["id"])
        execution.purge_job_inputs(session, _NoBlobs(), job, utcnow() + timedelta(days=1))
    with database.session() as session:
        for table in (JobExplanation, ExplanationHeatmap):
            assert session.scalar(select(func.count()).select_from(table).where(table.job_id == job.id)) == 0
    body = problem(service["clients"]["owner"].get(f"/v1/jobs/{explained_job['id']}/explanation"), 404)
    assert "purged" in body["detail"]


class _NoBlobs:
    """The purge deletes the blob after commit; this test checks the rows only."""

    def delete(self, key: str) -> None:
        pass
