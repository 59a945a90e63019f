"""Jobs over real HTTP against the running service (PostgreSQL and SQLite)."""

from __future__ import annotations

import base64
import uuid

from service_helpers import jpeg_bytes, paced, png_bytes, problem, wait_finished
from sqlalchemy import func, select

from twinlens.db.models import Feedback, Job, Result


def _active_model(client) -> dict:
    models = client.get("/v1/models", params={"plugin": "generic"}).json()["data"]
    active = [m for m in models if m["is_active"] and m["scope"] == "global"]
    assert len(active) == 1, models
    return active[0]


def test_fifty_jobs_all_succeed_with_results_naming_the_model(live):
    key = live.new_tenant_key()
    with live.client(key) as client:
        model = _active_model(client)
        ids = []
        for i in range(50):
            if i % 3 == 0:
                send = lambda i=i: client.post("/v1/plugins/generic/jobs", files={"image": ("x.png", png_bytes(seed=i), "image/png")},
                                               data={"text": f"a small red square number {i}"})
            elif i % 3 == 1:
                send = lambda i=i: client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": f"big blue circle {i}"}})
            else:
                encoded = base64.b64encode(jpeg_bytes()).decode()
                send = lambda i=i, encoded=encoded: client.post("/v1/plugins/generic/jobs",
                                                                json={"inputs": {"image": {"base64": encoded}}, "metadata": {"n": i}})
            response = paced(send)
            assert response.status_code == 202, response.text
            assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
            ids.append(response.json()["id"])
        finished = [wait_finished(client, job_id) for job_id in ids]
    assert [job["status"] for job in finished] == ["succeeded"] * 50, [j["error"] for j in finished if j["error"]]
    for job in finished:
        assert job["model_version"] == {"id": model["id"], "version": model["version"]}
        assert job["result"]["model_version"] == job["model_version"]
        assert set(job["result"]["heads"]) == {"label"}
        assert "needs_review" in job["result"]["decision"]
        assert job["attempts"] == 1
    with live.db.session() as session:
        stored = session.scalars(select(Result).where(Result.job_id.in_([uuid.UUID(i) for i in ids]))).all()
    assert len(stored) == 50
    assert {row.model_version for row in stored} == {model["version"]}


def test_wait_answers_with_the_finished_job(live):
    with live.client(live.new_tenant_key()) as client:
        response = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "small circle"}})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"]["decision"]
    assert response.headers["location"].endswith(response.json()["id"])


def test_idempotency_key_same_body_same_job_different_body_422(live):
    key = live.new_tenant_key()
    with live.client(key) as client:
        image = png_bytes(seed=4242)
        first = client.post("/v1/plugins/generic/jobs", headers={"Idempotency-Key": "order-1"},
                            files={"image": ("a.png", image, "image/png")}, data={"text": "same words"})
        again = client.post("/v1/plugins/generic/jobs", headers={"Idempotency-Key": "order-1"},
                            files={"image": ("b.png", image, "image/png")}, data={"text": "same words"})
        assert first.status_code == 202, first.text
        assert again.status_code in (200, 202), again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        different = client.post("/v1/plugins/generic/jobs", headers={"Idempotency-Key": "order-1"},
                                files={"image": ("a.png", image, "image/png")}, data={"text": "other words"})
        body = problem(different, 422)
        assert body["job_id"] == first.json()["id"]
        explained = client.post("/v1/plugins/generic/jobs?explain=true", headers={"Idempotency-Key": "order-1"},
                                files={"image": ("a.png", image, "image/png")}, data={"text": "same words"})
        assert problem(explained, 422)["job_id"] == first.json()["id"]  # asking for an explanation differs
        empty = client.post("/v1/plugins/generic/jobs", headers={"Idempotency-Key": ""}, json={"inputs": {"text": "x"}})
        problem(empty, 422)  # an empty key is no key a replay could find: refused, not a 500
        listed = client.get("/v1/jobs").json()["data"]
    assert [job["id"] for job in listed] == [first.json()["id"]]


def test_cursor_pagination_newest_first_without_gaps_or_repeats(live):
    with live.client(live.new_tenant_key()) as client:
        created = [client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": f"text {i}"}}).json()["id"] for i in range(7)]
        pages, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/jobs", params=params).json()
            pages.append([job["id"] for job in page["data"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        problem(client.get("/v1/jobs", params={"cursor": "not-a-cursor"}), 422)
        for job_id in created:
            wait_finished(client, job_id)
        succeeded = client.get("/v1/jobs", params={"status": "succeeded", "plugin": "generic", "limit": 100}).json()["data"]
        other_plugin = client.get("/v1/jobs", params={"plugin": "support_ticket"}).json()["data"]
    assert [len(page) for page in pages] == [3, 3, 1]
    flat = [job_id for page in pages for job_id in page]
    assert flat == list(reversed(created))  # newest first, each exactly once
    assert {job["id"] for job in succeeded} == set(created)
    assert other_plugin == []


def test_tenant_isolation(live):
    owner, stranger = live.new_tenant_key(), live.new_tenant_key()
    with live.client(owner) as client:
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "mine"}}).json()
    with live.client(stranger) as client:
        problem(client.get(f"/v1/jobs/{job['id']}"), 404)
        problem(client.post(f"/v1/jobs/{job['id']}/feedback", json={"comment": "not yours"}), 404)
        problem(client.get(f"/v1/jobs/{job['id']}/feedback"), 404)
        problem(client.get(f"/v1/jobs/{job['id']}/deliveries"), 404)
        problem(client.delete(f"/v1/jobs/{job['id']}"), 404)
        assert client.get("/v1/jobs", params={"limit": 100}).json()["data"] == []
    with live.client(owner) as client:
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200


def test_feedback_is_stored_and_checked_against_the_model_labels(live):
    with live.client(live.new_tenant_key()) as client:
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "a large square"}}).json()
        labels = list(job["result"]["heads"]["label"]["probabilities"])
        created = client.post(f"/v1/jobs/{job['id']}/feedback",
                              json={"labels": {"label": labels[-1]}, "comment": "it was this", "author": "agent 7"})
        assert created.status_code == 201, created.text
        listed = client.get(f"/v1/jobs/{job['id']}/feedback").json()["data"]
        problem(client.post(f"/v1/jobs/{job['id']}/feedback", json={"labels": {"label": "no_such_label"}}), 422)
        problem(client.post(f"/v1/jobs/{job['id']}/feedback", json={"labels": {"no_such_task": "x"}}), 422)
        problem(client.post(f"/v1/jobs/{job['id']}/feedback", json={}), 422)
    assert [item["labels"] for item in listed] == [{"label": labels[-1]}]
    with live.db.session() as session:
        row = session.scalar(select(Feedback).where(Feedback.job_id == uuid.UUID(job["id"])))
    assert row.labels == {"label": labels[-1]} and row.author == "agent 7" and row.comment == "it was this"


def test_delete_purges_the_blob_and_the_job(live):
    with live.client(live.new_tenant_key()) as client:
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30},
                          files={"image": ("x.png", png_bytes(seed=77_001), "image/png")}, data={"text": "delete me"}).json()
        digest = job["inputs"]["image"]["sha256"]
        blob = live.blob_path(digest)
        assert blob.exists()
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert not blob.exists()
        problem(client.get(f"/v1/jobs/{job['id']}"), 404)
        problem(client.delete(f"/v1/jobs/{job['id']}"), 404)
    with live.db.session() as session:
        assert session.get(Job, uuid.UUID(job["id"])) is None


def test_delete_keeps_a_blob_another_job_still_uses(live):
    image = png_bytes(seed=88_002)
    with live.client(live.new_tenant_key()) as client:
        first = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, files={"image": ("x.png", image, "image/png")}).json()
        second = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, files={"image": ("y.png", image, "image/png")}).json()
        assert client.delete(f"/v1/jobs/{first['id']}").status_code == 204
        assert live.blob_path(second["inputs"]["image"]["sha256"]).exists()
        assert client.delete(f"/v1/jobs/{second['id']}").status_code == 204
        assert not live.blob_path(second["inputs"]["image"]["sha256"]).exists()


def test_cancel_only_queued_jobs(live):
    with live.client(live.new_tenant_key()) as client:
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "done already"}}).json()
        body = problem(client.post(f"/v1/jobs/{job['id']}/cancel"), 409)
    assert body["status"] == 409


def test_auth_is_required_and_checked(live):
    with live.client("tl_not_a_real_key") as client:
        body = problem(client.get("/v1/jobs"), 401)
    assert "key" in body["detail"]
    import httpx

    response = httpx.get(f"{live.url}/v1/jobs")
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    plain = live.new_tenant_key()
    with live.client(plain) as client:
        problem(client.post("/v1/keys", json={"tenant": "x"}), 403)
        problem(client.post("/v1/models", json={"bundle_path": "/tmp"}), 403)
    with live.client() as admin:
        key_id = next(k["id"] for k in admin.get("/v1/keys").json()["data"] if k["prefix"] == plain[:11])
        assert admin.delete(f"/v1/keys/{key_id}").status_code == 204
    with live.client(plain) as client:
        problem(client.get("/v1/jobs"), 401)


def test_models_register_activate_and_scope(live, generic_bundle, tmp_path):
    with live.client() as admin:
        problem(admin.post("/v1/models", json={"bundle_path": str(generic_bundle)}), 409)
        problem(admin.post("/v1/models", json={"bundle_path": str(tmp_path / "missing")}), 422)
        tampered = tmp_path / "tampered"
        import shutil

        shutil.copytree(generic_bundle, tampered)
        weights = sorted(tampered.rglob("*.safetensors"))[0]  # an ensemble bundle nests its network's
        weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
        body = problem(admin.post("/v1/models", json={"bundle_path": str(tampered)}), 422)
        assert "hash" in body["detail"]
    tenant_admin, other = live.new_tenant_key(admin=True), live.new_tenant_key()
    with live.client(tenant_admin) as client:
        own = client.post("/v1/models", json={"bundle_path": str(generic_bundle), "scope": "tenant", "activate": True})
        assert own.status_code == 201, own.text
        own = own.json()
        assert own["scope"] == "tenant" and own["is_active"]
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "tenant model"}}).json()
    assert job["model_version"]["id"] == own["id"]
    assert job["result"]["model_version"]["id"] == own["id"]
    with live.client(other) as client:
        problem(client.get(f"/v1/models/{own['id']}"), 404)
        assert own["id"] not in {m["id"] for m in client.get("/v1/models").json()["data"]}
        job = client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "global model"}}).json()
        assert job["model_version"]["id"] == _active_model(client)["id"]


def test_plugins_health_metrics_and_docs(live):
    with live.client() as client:
        plugins = client.get("/v1/plugins").json()["data"]
        generic = client.get("/v1/plugins/generic").json()
        missing = client.get("/v1/plugins/no_such_plugin")
        problem(missing, 404)
        assert client.get("/livez").json()["status"] == "ok"
        ready = client.get("/readyz")
        metrics = client.get("/metrics")
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "TwinLens"
        problem(client.get("/v1/nowhere"), 404)
        problem(client.patch("/v1/jobs"), 405)
    assert "generic" in {p["name"] for p in plugins}
    assert generic["input_schema"]["texts"][0]["name"] == "text"
    # Every answer, a refusal too, says how long the service spent on it (Server-Timing).
    for answer in (ready, metrics, missing):
        name, duration = answer.headers["server-timing"].split(";dur=")
        assert name == "app" and 0 < float(duration) < 60_000, answer.headers["server-timing"]
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["backend"] == ("postgresql" if live.backend == "postgresql" else "sqlite")
    assert ready.json()["checks"]["models"]["loaded"]
    text = metrics.text
    for name in ("twinlens_http_requests_total", 'twinlens_jobs{status="queued"}', "twinlens_job_stage_seconds_bucket",
                 "twinlens_batch_size_bucket"):
        assert name in text, name


def test_job_rows_count_matches_what_the_api_lists(live):
    key = live.new_tenant_key()
    with live.client(key) as client:
        for i in range(3):
            client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": f"count {i}"}})
        listed = client.get("/v1/jobs").json()["data"]
        tenant_id = client.get("/v1/tenant").json()["id"]
    with live.db.session() as session:
        count = session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == uuid.UUID(tenant_id)))
    assert count == len(listed) == 3


def test_activating_a_version_switches_the_next_jobs(live, second_generic_bundle):
    with live.client() as admin:
        before = _active_model(admin)
        old_job = admin.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "old model"}}).json()
        registered = admin.post("/v1/models", json={"bundle_path": str(second_generic_bundle)})
        assert registered.status_code == 201, registered.text
        new = registered.json()
        assert not new["is_active"] and _active_model(admin)["id"] == before["id"]  # registering alone changes nothing
        try:
            activated = admin.post(f"/v1/models/{new['id']}/activate")
            assert activated.status_code == 200 and activated.json()["is_active"], activated.text
            assert _active_model(admin)["id"] == new["id"]
            new_job = admin.post("/v1/plugins/generic/jobs", params={"wait": 60}, json={"inputs": {"text": "new model"}}).json()
        finally:
            assert admin.post(f"/v1/models/{before['id']}/activate").status_code == 200
        old_again = admin.get(f"/v1/jobs/{old_job['id']}").json()
    assert new_job["status"] == "succeeded", new_job
    assert new_job["result"]["model_version"] == {"id": new["id"], "version": new["version"]}
    assert new["version"] != before["version"]
    assert old_again["result"]["model_version"]["id"] == before["id"]  # finished jobs keep theirs


def test_a_nul_in_a_plugin_filter_is_a_422_and_a_fixed_path_is_not_read_as_an_id(live):
    """PostgreSQL refuses a NUL inside a string: in a filter it must be the caller's 422, not a
    500. And GET on a POST-only path beside /{run_id} is a 405, not a bad-UUID 422."""
    with live.client() as admin:
        for path in ("/v1/jobs", "/v1/models", "/v1/training-runs", "/v1/batches", "/v1/model-activations"):
            problem(admin.get(path, params={"plugin": "generic\x00"}), 422)
        # Other text that reaches a query: a heatmap's head and image, the audit action, a
        # search label, a connector's event filters (schemathesis found the heatmap's).
        job = uuid.uuid4()
        problem(admin.get(f"/v1/jobs/{job}/heatmap.png", params={"head": "fault\x00"}), 422)
        problem(admin.get(f"/v1/jobs/{job}/heatmap.png", params={"head": "fault", "image": "lateral\x00"}), 422)
        problem(admin.get("/v1/audit-events", params={"action": "job.delete\x00"}), 422)
        problem(admin.get(f"/v1/jobs/{job}/similar", params={"label": "a\x00"}), 422)
        problem(admin.get(f"/v1/connectors/{job}/events", params={"ticket_id": "1\x00"}), 422)
        assert admin.get("/v1/model-activations", params={"plugin": "generic"}).status_code == 200
        assert admin.get("/v1/training-runs/from-corrections").status_code == 405
        problem(admin.get(f"/v1/training-runs/{uuid.uuid4()}"), 404)


def test_a_search_with_nothing_to_search_with_is_a_422_on_every_backend(live):
    """The search waits for a worker in sessions of its own; the request's key-lookup
    transaction must not be held meanwhile (on SQLite it held the write lock, and the search
    answered a 503 after busy_timeout instead of its 422)."""
    with live.client() as admin:
        body = problem(admin.post("/v1/search", json={"plugin": "generic"}), 422)
    assert body["errors"][0]["field"] == "text"
