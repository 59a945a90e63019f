"""Erasure: `DELETE /v1/subjects/{subject_ref}` takes every job, result, feedback, image and
webhook payload of one subject in the caller's tenant, and nothing of another tenant's
subject of the same reference; `twinlens tenants delete NAME` takes a tenant with all it
owns and leaves every other tenant's data (and images they share) alone."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from erasure_helpers import found, planted, png_carrying, receiver, stored_text, wait_delivered
from service_helpers import problem, wait_finished

from twinlens.db.repositories import AuditRepository

TWINLENS = str(Path(sys.executable).with_name("twinlens"))


def _job(client, text: str, *, subject_ref: str | None = None, image: bytes | None = None, webhook_url: str | None = None) -> dict:
    metadata = {"subject_ref": subject_ref} if subject_ref is not None else {}
    form = {"text": text, "metadata": json.dumps(metadata), **({"webhook_url": webhook_url} if webhook_url else {})}
    files = {"image": ("photo.png", image, "image/png")} if image is not None else None
    response = client.post("/v1/plugins/generic/jobs", data=form, files=files)
    assert response.status_code == 202, response.text
    finished = wait_finished(client, response.json()["id"])
    assert finished["status"] == "succeeded", finished
    return finished


def _label_of(job: dict) -> str:
    return job["result"]["decision"]["heads"]["label"]["label"]


def _blob_exists(live, image: bytes) -> bool:
    return live.blob_path(hashlib.sha256(image).hexdigest()).exists()


def test_erasing_a_subject_takes_all_of_it_in_the_callers_tenant_only(live):
    own_key, other_tenant_key = live.new_tenant_key(admin=True), live.new_tenant_key(admin=True)
    subject = planted("customer-")
    strings = {name: planted(name) for name in ("erased", "erasedtoo", "kept", "othertenant")}
    own_image, shared_image = png_carrying(planted("own")), png_carrying(planted("shared"))
    with live.client(own_key) as own, live.client(other_tenant_key) as other, receiver() as hook:
        erased = [_job(own, strings["erased"], subject_ref=subject, image=own_image, webhook_url=hook.url),
                  _job(own, strings["erasedtoo"], subject_ref=subject, image=shared_image)]
        wait_delivered(own, erased[0]["id"])
        assert own.post(f"/v1/jobs/{erased[1]['id']}/feedback", json={"labels": {"label": _label_of(erased[1])}}).status_code == 201
        kept = _job(own, strings["kept"], subject_ref=planted("someone-else-"))
        # Another tenant, the same reference (and the same image): another subject.
        others = _job(other, strings["othertenant"], subject_ref=subject, image=shared_image)

        # embeddings: every vector stored for the erased jobs (how many per job depends on the
        # kind of model that answered them; docs/search.md)
        vectors = _vectors_of(live, [job["id"] for job in erased])
        assert vectors > 0
        response = own.delete(f"/v1/subjects/{subject}")
        assert response.status_code == 200, response.text
        assert response.json() == {"subject_ref": subject, "jobs": 2, "results": 2, "feedback": 1, "webhook_deliveries": 1, "blobs": 1,
                                   "embeddings": vectors, "batch_rows": 0}

        for job in erased:
            problem(own.get(f"/v1/jobs/{job['id']}"), 404)
        assert own.get(f"/v1/jobs/{kept['id']}").status_code == 200
        assert other.get(f"/v1/jobs/{others['id']}").json()["result"] == others["result"]
        (event,) = own.get("/v1/audit-events", params={"action": "subject.erase"}).json()["data"]
        again = own.delete(f"/v1/subjects/{subject}").json()  # nothing left: an erasure is idempotent
    assert not _blob_exists(live, own_image) and _blob_exists(live, shared_image)
    left = found(strings, stored_text(live))
    assert set(left) == {"kept", "othertenant"}, left
    assert subject not in json.dumps(event)  # the audit log names the subject by digest only
    assert event["details"] == {name: count for name, count in response.json().items() if name != "subject_ref"}
    assert again["jobs"] == 0


def test_only_a_tenant_admin_erases_and_a_bad_reference_is_named(live):
    plain_key, admin_key = live.new_tenant_key(), live.new_tenant_key(admin=True)
    with live.client(plain_key) as plain, live.client(admin_key) as admin:
        problem(plain.delete("/v1/subjects/anyone"), 403)
        too_long = problem(admin.delete(f"/v1/subjects/{'x' * 201}"), 422)
        assert too_long["errors"][0]["field"].endswith("subject_ref")
        blobs_before = live.service.worker.context.blobs.count()
        problem(admin.delete("/v1/subjects/line%0Abreak"), 404)  # no route: no reference has a line break
        assert problem(admin.delete("/v1/subjects/tab%09char"), 422)["errors"][0]["field"].endswith("subject_ref")
        for bad, reason in ((12345, "string"), ("   ", "empty"), ("y" * 201, "200"), ("a\nb", "control")):
            body = problem(admin.post("/v1/plugins/generic/jobs", data={"text": "x", "metadata": json.dumps({"subject_ref": bad})},
                                      files={"image": ("p.png", png_carrying(planted("refused")), "image/png")}), 422)
            assert body["errors"][0]["field"] == "metadata.subject_ref" and reason in body["errors"][0]["reason"], body
        assert admin.get("/v1/jobs").json()["data"] == []  # nothing half-written: no job row
    assert live.service.worker.context.blobs.count() == blobs_before  # and no image


def _twinlens(live, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWINLENS_DATABASE_URL": live.settings.resolved_database_url,
           "TWINLENS_DATA_DIR": str(live.settings.data_dir), "TWINLENS_ENV": "development"}
    return subprocess.run([TWINLENS, *args], capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_deleting_a_tenant_takes_all_it_owns_and_nothing_else(live, generic_bundle):
    admin_key, other_key = live.new_tenant_key(admin=True), live.new_tenant_key()
    strings = {name: planted(name) for name in ("tenantjob", "tenantjobtoo", "feedbackcomment", "neighbour")}
    own_image, shared_image = png_carrying(planted("tenantown")), png_carrying(planted("tenantshared"))
    with live.client(admin_key) as client, live.client(other_key) as other, receiver() as hook:
        tenant = client.get("/v1/tenant").json()
        plain_key = client.post("/v1/keys", json={"tenant": tenant["name"]}).json()["key"]
        registered = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "scope": "tenant"})
        assert registered.status_code == 201, registered.text
        jobs = [_job(client, strings["tenantjob"], image=own_image, webhook_url=hook.url),
                _job(client, strings["tenantjobtoo"], image=shared_image)]
        wait_delivered(client, jobs[0]["id"])
        client.post(f"/v1/jobs/{jobs[0]['id']}/feedback", json={"labels": {"label": _label_of(jobs[0])}, "comment": strings["feedbackcomment"]})
        neighbour = _job(other, strings["neighbour"], image=shared_image)

        vectors = _vectors_of(live, [job["id"] for job in jobs])
        asked = _twinlens(live, "tenants", "delete", tenant["name"])  # no --yes and no terminal: nothing happens
        assert asked.returncode != 0 and client.get("/v1/tenant").status_code == 200
        deleted = _twinlens(live, "tenants", "delete", tenant["name"], "--yes")
        assert deleted.returncode == 0, deleted.stderr
        for key in (admin_key, plain_key):
            problem(client.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"}), 401)
        assert other.get(f"/v1/jobs/{neighbour['id']}").json()["result"] == neighbour["result"]
    assert json.loads(deleted.stdout) == {"tenant": tenant["name"], "jobs": 2, "results": 2, "feedback": 1, "webhook_deliveries": 1,
                                          "blobs": 1, "embeddings": vectors, "batch_rows": 0, "api_keys": 2, "model_versions": 1,
                                          "training_runs": 0, "batches": 0}
    assert not _blob_exists(live, own_image) and _blob_exists(live, shared_image)
    assert set(found(strings, stored_text(live))) == {"neighbour"}
    with live.db.session() as session:
        (event,) = AuditRepository(session).for_target(f"tenant:{tenant['id']}")
        assert (event.action, event.tenant_id, event.details["name"], event.details["jobs"]) == ("tenant.delete", None, tenant["name"], 2)


def test_deleting_an_unknown_tenant_says_so(live):
    result = _twinlens(live, "tenants", "delete", f"nosuch-{uuid.uuid4().hex[:8]}", "--yes")
    assert result.returncode == 2 and "no tenant" in result.stderr, (result.returncode, result.stderr)


def _vectors_of(live, job_ids: list[str]) -> int:
    from sqlalchemy import func, select

    from twinlens.db.embedding_tables import CaseEmbedding

    with live.db.session() as session:
        ids = [uuid.UUID(job_id) for job_id in job_ids]
        return session.scalar(select(func.count()).select_from(CaseEmbedding).where(CaseEmbedding.job_id.in_(ids)))
