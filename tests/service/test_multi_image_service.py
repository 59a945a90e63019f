"""Several images per case through the real service (PostgreSQL, HTTP, the in-process
worker) and the CLI: a support ticket with three photos, a chest study with a frontal and
a lateral view, more images than a plugin takes (a 422 naming its limit, nothing stored),
and every image's blob forgotten with the job (docs/multi-image.md)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from service_db import fresh_database, service_settings
from twinlens.cli.service import EmbeddedService, tiny_encoders
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys

# Training two models and OCR-ing photos in the CLI: minutes on a loaded CI machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

TWINLENS = str(Path(sys.executable).parent / "twinlens")


def _train(plugin_name: str, dataset, out: Path) -> Path:
    from twinlens.contract.registry import get_plugin
    from twinlens.contract.spec import AugmentSpec
    from twinlens.engine.training import train_model

    plugin = get_plugin(plugin_name)
    spec = plugin.default_model_spec().model_copy(update=tiny_encoders())
    config = plugin.training_defaults().model_copy(update={"epochs": 1, "progress": False, "augment": AugmentSpec(enabled=False)})
    return train_model(plugin, dataset, out_dir=out, spec=spec, config=config).bundle_dir


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from twinlens.contract.registry import get_plugin
    from twinlens_chest_xray.sample_data import make_sample_dataset as chest_studies
    from twinlens_support_ticket.dataset import read_export
    from twinlens_support_ticket.generate.build import make_sample_dataset as tickets

    root = tmp_path_factory.mktemp("multi")
    ticket_export = tickets(root / "tickets", n=10, seed=3, photos=3)
    chest_manifest = chest_studies(root / "studies", n=8, seed=4, image_size=64, views=2)
    with fresh_database() as url:
        settings = service_settings(root / "data", url, max_upload_bytes=2_000_000, max_image_pixels=5_000_000,
                                    max_images_total_bytes=4_000_000)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        with database.session() as session:
            _, key = keys.create_key(session, "multi-image-tests", admin=True)
        running = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
        models = settings.data_dir / "models"
        bundles = {
            "support_ticket": _train("support_ticket", read_export(ticket_export, ocr_photos=False, progress=False), models / "tickets"),
            "chest_xray": _train("chest_xray", get_plugin("chest_xray").read_dataset(chest_manifest), models / "chest"),
        }
        import httpx

        client = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"}, timeout=180)
        for bundle in bundles.values():
            response = client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True})
            assert response.status_code == 201, response.text
        try:
            yield {"client": client, "database": database, "settings": settings, "bundles": bundles,
                   "tickets": ticket_export, "studies": chest_manifest}
        finally:
            client.close()
            running.close()
            database.dispose()


def _ticket_with_photos(export: Path) -> tuple[list[Path], str]:
    row = next(json.loads(line) for line in export.read_text().splitlines() if len(json.loads(line)["attachments"]) == 3)
    return [export.parent / name for name in row["attachments"]], row["description"] or row["subject"]


def _study(manifest: Path) -> tuple[dict[str, Path], str]:
    row = json.loads(manifest.read_text().splitlines()[0])
    return {item["view"]: manifest.parent / item["path"] for item in row["image"]}, row["report"] or "No acute findings."


def _png(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (seed * 40 % 255, 90, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def test_both_bundles_have_one_slot_per_image(service):
    from twinlens.contract.bundle_files import read_bundle_config

    slots = {name: read_bundle_config(path)["model_spec"]["max_images"] for name, path in service["bundles"].items()}
    assert slots == {"support_ticket": 3, "chest_xray": 2}


def test_a_ticket_with_three_photos(service, tmp_path):
    photos, description = _ticket_with_photos(service["tickets"])
    files = [("image", (path.name, path.read_bytes(), "application/octet-stream")) for path in photos]
    response = service["client"].post("/v1/plugins/support_ticket/jobs", params={"wait": 120, "explain": "true"}, files=files,
                                      data={"text": description})
    job = _finished(service, response)
    assert job["status"] == "succeeded", job
    assert [image["sha256"] for image in job["inputs"]["images"]] == [_sha(path.read_bytes()) for path in photos]
    assert job["inputs"]["image"]["sha256"] == job["inputs"]["images"][0]["sha256"]
    assert "$images" not in job["metadata"]
    explanation = job["result"]["explanation"]
    assert set(explanation["image_contributions"]) == {"image 1", "image 2", "image 3"}
    assert sum(explanation["image_contributions"].values()) == pytest.approx(1.0, abs=1e-3)
    decision = job["result"]["decision"]
    assert decision["explanation"]["photo_contributions"] == explanation["image_contributions"]
    assert decision["explanation"]["photo_evidence"].split(" photo ")[0] in ("the first", "the second", "the third")

    explained = service["client"].get(f"/v1/jobs/{job['id']}/explanation")
    assert explained.status_code == 200, explained.text
    fault = explained.json()["heads"]["fault"]
    assert set(fault["image_heatmaps"]) == {"image 1", "image 2", "image 3"}
    for name, meta in fault["image_heatmaps"].items():
        overlay = service["client"].get(meta["overlay_url"])
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png", name
    missing = service["client"].get(f"/v1/jobs/{job['id']}/heatmap.png", params={"head": "fault", "image": "image 9"})
    assert missing.status_code == 404 and "image 1" in missing.json()["detail"]

    cli = subprocess.run([TWINLENS, "predict", "--model", str(service["bundles"]["support_ticket"]),
                          *[arg for path in photos for arg in ("--image", str(path))], "--text", description, "--json"],
                         capture_output=True, text=True, timeout=900)
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert set(printed["prediction"]["image_contributions"]) == {"image 1", "image 2", "image 3"}
    assert printed["decision"]["fault"] == decision["fault"]


def test_a_chest_study_with_two_views(service):
    views, report = _study(service["studies"])
    files = [(f"image[{view}]", (path.name, path.read_bytes(), "application/octet-stream")) for view, path in views.items()]
    response = service["client"].post("/v1/plugins/chest_xray/jobs", params={"wait": 120}, files=files, data={"report": report})
    job = _finished(service, response)
    assert job["status"] == "succeeded", job
    assert [image["view"] for image in job["inputs"]["images"]] == ["frontal", "lateral"]
    assert set(job["result"]["explanation"]["image_contributions"]) == {"frontal", "lateral"}
    # A lateral view beside the frontal one is a study, not a doubt about the input.
    assert not any("lateral view" in doubt for doubt in job["result"]["explanation"]["extras"].get("input_doubts", []))

    cli = subprocess.run([TWINLENS, "predict", "--model", str(service["bundles"]["chest_xray"]),
                          "--image", f"frontal={views['frontal']}", "--image", f"lateral={views['lateral']}",
                          "--field", f"report={report}", "--json"], capture_output=True, text=True, timeout=900)
    assert cli.returncode == 0, cli.stderr
    assert set(json.loads(cli.stdout)["prediction"]["image_contributions"]) == {"frontal", "lateral"}


def test_json_images_with_views_and_the_views_field(service):
    views, report = _study(service["studies"])
    body = {"inputs": {"report": report, "images": [
        {"base64": base64.b64encode(views["lateral"].read_bytes()).decode(), "view": "lateral"},
        {"base64": base64.b64encode(views["frontal"].read_bytes()).decode(), "view": "frontal"}]}}
    response = service["client"].post("/v1/plugins/chest_xray/jobs", json=body)
    assert response.status_code in (200, 201, 202), response.text
    assert [image["view"] for image in response.json()["inputs"]["images"]] == ["lateral", "frontal"]
    files = [("image", (path.name, path.read_bytes(), "application/octet-stream")) for path in views.values()]
    response = service["client"].post("/v1/plugins/chest_xray/jobs", files=files, data={"views": "frontal,lateral", "report": report})
    assert response.status_code in (200, 201, 202), response.text
    assert [image["view"] for image in response.json()["inputs"]["images"]] == ["frontal", "lateral"]


def _job_count(service) -> int:
    with service["database"].session() as session:
        return session.execute(text("SELECT count(*) FROM jobs")).scalar_one()


@pytest.mark.parametrize("how", ["multipart", "json"])
def test_more_images_than_the_plugin_takes_is_a_422_naming_the_limit(service, how):
    before = _job_count(service)
    photos = [_png(seed) for seed in range(4)]
    if how == "multipart":
        response = service["client"].post("/v1/plugins/support_ticket/jobs", data={"text": "broken"},
                                          files=[("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(photos)])
    else:
        images = [{"base64": base64.b64encode(data).decode()} for data in photos]
        response = service["client"].post("/v1/plugins/support_ticket/jobs", json={"inputs": {"text": "broken", "images": images}})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert "at most 3" in problem["detail"] and "max_images=3" in problem["detail"]
    assert _job_count(service) == before


def test_an_unknown_view_and_one_bad_image_among_several(service):
    views, report = _study(service["studies"])
    response = service["client"].post("/v1/plugins/chest_xray/jobs", data={"report": report},
                                      files=[("image[oblique]", ("x.dcm", views["frontal"].read_bytes(), "application/dicom"))])
    assert response.status_code == 422, response.text
    assert "oblique" in response.json()["detail"] and "frontal, lateral" in response.json()["detail"]
    response = service["client"].post("/v1/plugins/support_ticket/jobs", data={"text": "broken"},
                                      files=[("image", ("a.png", _png(1), "image/png")), ("image", ("b.png", b"not a picture", "image/png"))])
    assert response.status_code == 422, response.text
    assert "image[1]" in response.text


def test_deleting_the_job_forgets_every_image(service):
    photos = [_png(seed) for seed in (7, 8, 9)]
    response = service["client"].post("/v1/plugins/support_ticket/jobs", data={"text": "screen cracked"}, params={"wait": 120},
                                      files=[("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(photos)])
    job = _finished(service, response)
    blob_dir = service["settings"].resolved_blob_dir
    stored = {image["sha256"] for image in job["inputs"]["images"]}
    assert len(stored) == 3 and all(list(blob_dir.rglob(f"*{key}*")) for key in stored)
    assert service["client"].delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not any(list(blob_dir.rglob(f"*{key}*")) for key in stored)


def _finished(service, response, seconds: float = 600) -> dict:
    """The job once finished: `wait` is capped by the server (max_wait_seconds), and a
    loaded CI machine may take longer than that."""
    import time

    assert response.status_code in (200, 202), response.text
    job = response.json()
    deadline = time.monotonic() + seconds
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = service["client"].get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _blobs_exist(service, keys_: set[str]) -> list[bool]:
    blob_dir = service["settings"].resolved_blob_dir
    return [bool(list(blob_dir.rglob(f"*{key}*"))) for key in sorted(keys_)]


def test_the_retention_purge_and_subject_erasure_forget_every_image(service):
    from datetime import timedelta

    from twinlens.blobs import LocalBlobStore
    from twinlens.db.base import utcnow
    from twinlens.db.models import Job
    from twinlens.services.execution import purge_expired_inputs

    client = service["client"]
    shared = _png(20)  # also the photo of a job that stays: its blob must stay too
    kept = client.post("/v1/plugins/support_ticket/jobs", data={"text": "kept"}, params={"wait": 120},
                       files=[("image", ("k.png", _png(30), "image/png")), ("image", ("s.png", shared, "image/png"))])
    purged = client.post("/v1/plugins/support_ticket/jobs", data={"text": "old ticket"}, params={"wait": 120},
                         files=[("image", ("a.png", _png(21), "image/png")), ("image", ("s.png", shared, "image/png"))])
    erased = client.post("/v1/plugins/support_ticket/jobs", params={"wait": 120},
                         data={"text": "a customer's ticket", "metadata": json.dumps({"subject_ref": "cust-77"})},
                         files=[("image", (f"{i}.png", _png(40 + i), "image/png")) for i in range(3)])
    kept, purged, erased = (_finished(service, response) for response in (kept, purged, erased))
    digests = {name: {image["sha256"] for image in job["inputs"]["images"]} for name, job in
               (("kept", kept), ("purged", purged), ("erased", erased))}
    with service["database"].session() as session:
        job = session.get(Job, uuid.UUID(purged["id"]))
        job.finished_at = utcnow() - timedelta(days=40)
        session.commit()
        assert purge_expired_inputs(session, LocalBlobStore(service["settings"].resolved_blob_dir), 30) == 1
        session.commit()
    assert set(client.get(f"/v1/jobs/{purged['id']}").json()["inputs"]) == {"purged_at"}
    assert _blobs_exist(service, digests["purged"] - digests["kept"]) == [False]
    assert all(_blobs_exist(service, digests["kept"]))  # the shared photo is still another job's
    assert client.delete("/v1/subjects/cust-77").status_code in (200, 204)
    assert not any(_blobs_exist(service, digests["erased"]))
    assert all(_blobs_exist(service, digests["kept"]))
