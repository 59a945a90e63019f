"""Similar cases and search through the real service (HTTP, PostgreSQL, the worker): every
finished job's vectors are stored; GET /v1/jobs/{id}/similar finds the job's look-alikes
with their labels, corrections and decisions; POST /v1/search finds photos with a text
(in an aligned space trained by a training run of kind align), cases with a text, and
photos with a photo; another tenant's cases never appear; DELETE and the retention purge
take the vectors."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from service_helpers import problem, wait_finished

from twinlens.cli.service import train_sample_model
from twinlens.db.base import utcnow
from twinlens.db.embedding_tables import CaseEmbedding
from twinlens.db.models import Job
from twinlens.generic.sample_data import make_sample_dataset
from twinlens.worker import tasks

pytestmark = pytest.mark.parametrize("live", ["postgresql"], indirect=True)
CASES = 24


@pytest.fixture(scope="module")
def network_bundle(tmp_path_factory) -> Path:
    """A tiny generic network (the session's generic model may ship as an ensemble of
    linear members, which gives no text vectors)."""
    bundle = tmp_path_factory.mktemp("models") / "generic-network"
    return train_sample_model("generic", bundle, rows=160, epochs=3, tiny=True, preset="network")


def _tenant(live, network_bundle, *, admin: bool = False) -> str:
    """A new tenant whose active generic model is the network (its own, scope tenant)."""
    admin_key = live.new_tenant_key(admin=True)
    with live.client(admin_key) as client:
        response = client.post("/v1/models", json={"bundle_path": str(network_bundle), "activate": True, "scope": "tenant"})
        assert response.status_code == 201, response.text
        if admin:
            return admin_key
        tenant = client.get("/v1/tenant").json()["name"]
        created = client.post("/v1/keys", json={"tenant": tenant})
        assert created.status_code == 201, created.text
        return created.json()["key"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The generic plugin's generated rows (photos of coloured shapes, short texts)."""
    manifest = make_sample_dataset(tmp_path_factory.mktemp("search-data"), n=160, seed=5)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return manifest, [row for row in rows if row["image"] and row["text"]]


def _submit(client, root: Path, row: dict) -> str:
    image = (root / row["image"]).read_bytes()
    response = client.post("/v1/plugins/generic/jobs", data={"text": row["text"]},
                           files={"image": ("photo.png", image, "image/png")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _run_cases(client, manifest: Path, rows: list[dict]) -> dict[str, dict]:
    """Submit the rows as jobs; {job id: row} once all succeeded."""
    ids = {_submit(client, manifest.parent, row): row for row in rows}
    for job_id in ids:
        assert wait_finished(client, job_id)["status"] == "succeeded"
    return ids


def _colour(row: dict) -> str:
    return row["tags"][0]


def test_similar_cases_of_a_job_with_labels_corrections_and_decisions(live, generated, network_bundle):
    manifest, rows = generated
    key = _tenant(live, network_bundle)
    with live.client(key) as client:
        cases = _run_cases(client, manifest, rows[:CASES])
        twin_of = next(iter(cases))
        twin = _submit(client, manifest.parent, cases[twin_of])  # the same photo and text again
        assert wait_finished(client, twin)["status"] == "succeeded"
        corrected = list(cases)[3]
        label = client.get(f"/v1/jobs/{corrected}").json()["result"]["heads"]["label"]["label"]
        assert client.post(f"/v1/jobs/{corrected}/feedback", json={"labels": {"label": label}}).status_code == 201

        body = client.get(f"/v1/jobs/{twin}/similar", params={"k": 10}).json()
        assert body["query"]["kind"] == "fused" and body["query"]["space"] == "model" and body["query"]["exact"] is True
        found = body["data"]
        assert len(found) == 10 and twin not in {case["job_id"] for case in found}
        assert found[0]["job_id"] == twin_of and found[0]["score"] > 0.999  # its twin first
        assert [case["score"] for case in found] == sorted((case["score"] for case in found), reverse=True)
        for case in found:
            assert case["labels"]["label"] and "needs_review" in case["decision"]

        only_corrected = client.get(f"/v1/jobs/{twin}/similar", params={"corrected_only": True}).json()["data"]
        assert [case["job_id"] for case in only_corrected] == [corrected]
        assert only_corrected[0]["correction"]["labels"] == {"label": label}
        twin_label = found[0]["labels"]["label"]
        same_label = client.get(f"/v1/jobs/{twin}/similar", params={"label": twin_label, "k": 50}).json()["data"]
        assert same_label[0]["job_id"] == twin_of and all(case["labels"]["label"] == twin_label for case in same_label)

        with live.db.session() as session:
            kinds = {row.kind for row in session.query(CaseEmbedding).filter(CaseEmbedding.job_id == uuid.UUID(twin))}
        assert kinds == {"fused", "image", "text"}
        # Without an aligned space, text cannot be compared with photos.
        assert "aligned" in problem(client.post("/v1/search", json={"plugin": "generic", "text": "a red item",
                                                                    "target": "images"}), 409)["detail"]


def test_a_text_query_finds_the_right_photos_in_the_aligned_space(live, generated, network_bundle, tmp_path):
    manifest, rows = generated
    key = _tenant(live, network_bundle, admin=True)
    with live.client(key) as client:
        run = client.post("/v1/plugins/generic/alignments", json={"data_path": str(manifest), "output_dir": str(tmp_path / "space"),
                                                                  "epochs": 150})
        assert run.status_code == 202, run.text
        cases = _run_cases(client, manifest, rows[-CASES:])
        finished = _wait_run(client, run.json()["id"])
        assert finished["status"] == "succeeded", finished
        assert finished["request"]["kind"] == "align" and finished["metrics"]["pairs"] > 100
        assert (tmp_path / "space" / "alignment.json").is_file()

        shares = {}
        for colour in ("red", "green", "blue"):
            body = client.post("/v1/search", json={"plugin": "generic", "text": f"Photo attached, colour {colour}.", "k": 5})
            assert body.status_code == 200, body.text
            assert body.json()["query"]["space"] == "aligned"
            top = [cases[case["job_id"]] for case in body.json()["data"]]
            assert len(top) == 5
            shares[colour] = sum(_colour(row) == colour for row in top) / 5
        chance = {c: sum(_colour(row) == c for row in cases.values()) / len(cases) for c in shares}
        # A tiny model aligned on ~140 pairs: clearly better than chance on average (about
        # 1/3), and better than chance for most colours.
        assert sum(shares.values()) / 3 >= 1.5 * sum(chance.values()) / 3, (shares, chance)
        assert sum(shares[c] > chance[c] for c in shares) >= 2, (shares, chance)

        # Image to image: its own photo comes first.
        probe_id, probe = next(iter(cases.items()))
        image = base64.b64encode((manifest.parent / probe["image"]).read_bytes()).decode()
        body = client.post("/v1/search", json={"plugin": "generic", "image": {"base64": image}, "k": 3}).json()
        assert body["query"]["kind"] == "image" and body["data"][0]["job_id"] == probe_id
        # Text to case: the cases' texts.
        body = client.post("/v1/search", json={"plugin": "generic", "text": probe["text"], "target": "cases", "k": 3}).json()
        assert body["query"]["kind"] == "text" and cases[body["data"][0]["job_id"]]["text"] == probe["text"]


def test_another_tenants_cases_never_appear(live, generated, network_bundle):
    manifest, rows = generated
    own_key, other_key = _tenant(live, network_bundle), _tenant(live, network_bundle, admin=True)
    with live.client(own_key) as own, live.client(other_key) as other:
        own_cases = _run_cases(own, manifest, rows[:8])
        other_cases = _run_cases(other, manifest, rows[:8])  # the very same photos and texts
        for job_id in own_cases:
            found = {case["job_id"] for case in own.get(f"/v1/jobs/{job_id}/similar", params={"k": 100}).json()["data"]}
            assert found and found <= set(own_cases) and not found & set(other_cases)
            problem(other.get(f"/v1/jobs/{job_id}/similar"), 404)
        row = rows[0]
        image = base64.b64encode((manifest.parent / row["image"]).read_bytes()).decode()
        for client, mine, theirs in ((own, own_cases, other_cases), (other, other_cases, own_cases)):
            for query in ({"image": {"base64": image}}, {"text": row["text"], "target": "cases"}):
                found = {case["job_id"] for case in client.post("/v1/search", json={"plugin": "generic", "k": 100, **query}).json()["data"]}
                assert found and found <= set(mine) and not found & set(theirs)


def test_deleting_a_job_takes_its_vectors(live, generated, network_bundle):
    manifest, rows = generated
    key = _tenant(live, network_bundle)
    with live.client(key) as client:
        cases = _run_cases(client, manifest, rows[:3])
        gone = next(iter(cases))
        assert client.delete(f"/v1/jobs/{gone}").status_code == 204
        with live.db.session() as session:
            assert session.query(CaseEmbedding).filter(CaseEmbedding.job_id == uuid.UUID(gone)).count() == 0
        for job_id in list(cases)[1:]:
            assert gone not in {case["job_id"] for case in client.get(f"/v1/jobs/{job_id}/similar").json()["data"]}


def _wait_run(client, run_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/training-runs/{run_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"training run {run_id} did not finish in {timeout}s")


def test_the_retention_purge_takes_the_vectors(live, generated, network_bundle):
    manifest, rows = generated
    key = _tenant(live, network_bundle)
    with live.client(key) as client:
        cases = _run_cases(client, manifest, rows[:2])
        with live.db.session() as session:
            for job_id in cases:
                session.get(Job, uuid.UUID(job_id)).finished_at = utcnow() - timedelta(days=live.settings.retention_days + 1)
        assert tasks.purge_expired_inputs(live.service.worker.context) >= 2
        with live.db.session() as session:
            assert session.query(CaseEmbedding).filter(CaseEmbedding.job_id.in_([uuid.UUID(j) for j in cases])).count() == 0
        for job_id in cases:
            assert "purged" in problem(client.get(f"/v1/jobs/{job_id}/similar"), 409)["detail"]
