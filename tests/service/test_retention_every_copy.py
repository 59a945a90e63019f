"""After the retention purge, and after DELETE /v1/jobs/{id}, no copy of a job's inputs is
left anywhere: strings planted in every input (ticket text and subject, the OCR text given
or read from the photo, metadata, the subject reference, a chunk inside the image file)
are searched for in every column of every table and in every blob file, on PostgreSQL and
on SQLite. What the model made (labels, scores, model version) stays."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from erasure_helpers import found, planted, receiver, stored_text, wait_delivered
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from service_helpers import wait_finished

from twinlens.cli.service import train_sample_model
from twinlens.contract.registry import get_plugin
from twinlens.db.base import utcnow
from twinlens.db.models import Job
from twinlens.worker import tasks


@pytest.fixture(scope="session")
def support_ticket_bundle(tmp_path_factory) -> Path:
    """A tiny support_ticket network (about ten seconds): the plugin that copies its inputs
    into results (ticket text, OCR text, product details)."""
    bundle = tmp_path_factory.mktemp("models") / "support-ticket-tiny"
    return train_sample_model("support_ticket", bundle, rows=24, epochs=1, tiny=True, preset="network")


@pytest.fixture
def ticket_tenant(live, support_ticket_bundle) -> str:
    """A tenant admin key whose tenant has the support_ticket model (its own, so other
    tests' tenants are not given OCR work)."""
    key = live.new_tenant_key(admin=True)
    with live.client(key) as client:
        response = client.post("/v1/models", json={"bundle_path": str(support_ticket_bundle), "activate": True, "scope": "tenant"})
    assert response.status_code == 201, response.text
    return key


def _photo_with(error_code: str, chunk: str) -> bytes:
    """A screen photo showing an error code (OCR reads it), with a text chunk in the file."""
    image = Image.new("RGB", (640, 200), (255, 255, 255))
    ImageDraw.Draw(image).text((30, 60), f"ERROR {error_code}", font=ImageFont.load_default(size=56), fill=(0, 0, 0))
    info = PngInfo()
    info.add_text("Comment", chunk)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _error_code() -> str:
    # Letters and digits OCR does not confuse with one another.
    return planted("").upper().translate(str.maketrans("0125B8", "KPZSHX"))[:8]


def _submit_photo_job(client, strings: dict[str, str], webhook_url: str) -> dict:
    metadata = {"product_line": strings["product_line"], "model": strings["model"], "subject_ref": strings["subject_ref"],
                "customer_note": strings["customer_note"], "purchase_date": "2024-03-01", "warranty_status": "in_warranty"}
    response = client.post(
        "/v1/plugins/support_ticket/jobs",
        files={"image": ("screen.png", _photo_with(_error_code(), strings["image_chunk"]), "image/png")},
        data={"text": f"The screen went dark, code {strings['text']}", "subject": strings["subject"],
              "metadata": json.dumps(metadata), "webhook_url": webhook_url},
    )
    assert response.status_code == 202, response.text
    return response.json()


def _submit_ocr_job(client, strings: dict[str, str], webhook_url: str) -> dict:
    response = client.post("/v1/plugins/support_ticket/jobs", json={
        "inputs": {"text": f"It clicks and stops: {strings['text_b']}", "ocr": f"Fault {strings['ocr_given']}"},
        "metadata": {"note": strings["note_b"]}, "webhook_url": webhook_url,
    })
    assert response.status_code == 202, response.text
    return response.json()


def _plant_and_run(live, client) -> tuple[dict[str, str], list[dict]]:
    """Two finished jobs with delivered webhooks, and every string planted in them (the
    text OCR read from the photo included), each checked to be stored somewhere."""
    strings = {name: planted(name.replace("_", "")) for name in (
        "text", "subject", "product_line", "model", "subject_ref", "customer_note", "image_chunk",
        "text_b", "ocr_given", "note_b")}
    with receiver() as hook:
        submitted = [_submit_photo_job(client, strings, hook.url), _submit_ocr_job(client, strings, hook.url)]
        jobs = [wait_finished(client, job["id"], timeout=120) for job in submitted]
        for job in jobs:
            assert job["status"] == "succeeded", job
            wait_delivered(client, job["id"])
    read_from_photo = jobs[0]["result"]["decision"]["ocr_text"]
    assert read_from_photo and "error" in read_from_photo.lower().replace(" ", ""), read_from_photo
    strings["ocr_read"] = read_from_photo
    stored = stored_text(live)
    assert found(strings, stored) == strings, "a planted string never reached storage: the search would prove nothing"
    return strings, jobs


def test_the_retention_purge_leaves_no_copy_of_any_input(live, ticket_tenant):
    with live.client(ticket_tenant) as client:
        strings, jobs = _plant_and_run(live, client)
        _finished_long_ago(live, [job["id"] for job in jobs], days=live.settings.retention_days + 1)

        assert tasks.purge_expired_inputs(live.service.worker.context) == 2  # the worker's own periodic task

        left = found(strings, stored_text(live))
        assert not left, f"copies of inputs outlived the purge: {sorted(left)}"
        for before in jobs:
            after = client.get(f"/v1/jobs/{before['id']}").json()
            _result_still_useful(before, after)
            assert after["metadata"] == {} and set(after["inputs"]) == {"purged_at"}
            (delivery,) = client.get(f"/v1/jobs/{before['id']}/deliveries").json()["data"]
            assert delivery["status"] == "succeeded"  # the delivery log stays, its payload less the inputs
        (event,) = client.get("/v1/audit-events", params={"action": "retention.purge"}).json()["data"]
    assert event["details"] == {"jobs": 2, "retention_days": live.settings.retention_days}
    assert event["api_key_id"] is None


def test_deleting_a_job_leaves_no_copy_of_any_input(live, ticket_tenant):
    with live.client(ticket_tenant) as client:
        strings, jobs = _plant_and_run(live, client)
        strings["feedback"] = planted("feedback")
        fault = jobs[0]["result"]["decision"]["fault"]
        assert client.post(f"/v1/jobs/{jobs[0]['id']}/feedback", json={"labels": {"fault": fault}, "comment": strings["feedback"]}).status_code == 201
        for job in jobs:
            assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204

        left = found(strings, stored_text(live))
        assert not left, f"copies of inputs outlived DELETE: {sorted(left)}"
        deletions = client.get("/v1/audit-events", params={"action": "job.delete"}).json()["data"]
    assert {event["target"] for event in deletions} == {f"job:{job['id']}" for job in jobs}


def _finished_long_ago(live, job_ids: list[str], days: float) -> None:
    with live.db.session() as session:
        for job_id in job_ids:
            session.get(Job, uuid.UUID(job_id)).finished_at = utcnow() - timedelta(days=days)


def _result_still_useful(before: dict, after: dict) -> None:
    """Labels, scores and the model version survive; the decision still reads as one."""
    assert after["result"]["heads"] == before["result"]["heads"]
    assert after["result"]["model_version"] == before["result"]["model_version"]
    kept = ("fault", "fault_confidence", "severity", "action", "team", "needs_review")
    assert {k: after["result"]["decision"][k] for k in kept} == {k: before["result"]["decision"][k] for k in kept}
    assert after["result"]["decision"]["ocr_text"] is None
    assert after["result"]["explanation"]["extras"] == {}
    get_plugin("support_ticket").decision_model().model_validate(after["result"]["decision"])
