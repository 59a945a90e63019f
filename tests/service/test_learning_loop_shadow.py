"""Shadow mode over the real service (PostgreSQL and SQLite, the in-process worker): a
challenger runs on every live job of its tenant, its outputs are stored apart, and
nothing of it reaches the caller: not the job answers, not the job list, not the
webhooks. Corrections, export, holdout and drift on the same jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from erasure_helpers import found, planted, stored_text
from service_helpers import problem, wait_finished
from sqlalchemy import select
from test_retention_every_copy import _finished_long_ago, support_ticket_bundle  # noqa: F401  (a fixture)
from test_webhooks import receiver

from twinlens.cli.service import train_sample_model
from twinlens.contract.registry import get_plugin
from twinlens.db.learning_tables import ShadowResult
from twinlens.generic import GenericPlugin
from twinlens.worker import tasks


def _shadow_rows(live, job_ids: list[str]) -> list[ShadowResult]:
    import uuid

    with live.db.session() as session:
        return list(session.scalars(select(ShadowResult).where(ShadowResult.job_id.in_([uuid.UUID(j) for j in job_ids]))))


def _wait_shadowed(live, job_ids: list[str], timeout: float = 60.0) -> list[ShadowResult]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _shadow_rows(live, job_ids)
        if len(rows) == len(job_ids):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{len(_shadow_rows(live, job_ids))} of {len(job_ids)} jobs shadowed after {timeout}s")


def _submit(client, text: str, webhook_url: str | None = None) -> str:
    body = {"inputs": {"text": text}, **({"webhook_url": webhook_url} if webhook_url else {})}
    response = client.post("/v1/plugins/generic/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_shadow_outputs_never_reach_job_answers_or_webhooks(live, second_generic_bundle):
    key = live.new_tenant_key(admin=True)
    with live.client(key) as client:
        champion = client.get("/v1/models", params={"plugin": "generic"}).json()["data"]
        champion = next(m for m in champion if m["is_active"])
        response = client.post("/v1/models", json={"bundle_path": str(second_generic_bundle), "scope": "tenant"})
        assert response.status_code == 201, response.text
        challenger = response.json()
        problem(client.put(f"/v1/models/{challenger['id']}/shadow", json={"share": 0}), 422)
        shadowing = client.put(f"/v1/models/{challenger['id']}/shadow", json={"share": 1.0})
        assert shadowing.status_code == 200, shadowing.text
        with receiver([200]) as hook:
            ids = [_submit(client, f"a large red item, number {i}", hook.url) for i in range(4)]
            answers = [wait_finished(client, job_id) for job_id in ids]
            rows = _wait_shadowed(live, ids)
            deadline = time.monotonic() + 30
            while len(hook.requests) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.1)
            webhooks = [body.decode() for _, body in hook.requests]
        again = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
        listed = client.get("/v1/jobs").text
        summary = client.get(f"/v1/models/{challenger['id']}/shadow").json()

    assert len(webhooks) == len(ids)
    secret_marks = (challenger["id"], challenger["version"], challenger["content_hash"])
    for text in [*map(json.dumps, answers), *map(json.dumps, again), listed, *webhooks]:
        for mark in secret_marks:
            assert mark not in text, f"the challenger ({mark}) leaked into what the caller reads"
    for answer in answers:
        assert answer["status"] == "succeeded" and answer["result"]["model_version"]["id"] == champion["id"]
    for body in webhooks:
        assert json.loads(body)["data"]["result"]["model_version"]["id"] == champion["id"]
    # The challenger did run on each job, and its outputs are kept apart with their figures.
    assert {str(row.model_version_id) for row in rows} == {challenger["id"]}
    assert all(row.heads["label"]["probabilities"] and row.latency_ms > 0 for row in rows)
    assert all(str(row.champion_version_id) == champion["id"] for row in rows)
    assert summary["in_shadow"] and summary["share"] == 1.0 and summary["jobs"] == len(ids)
    assert 0.0 <= summary["agreement"]["label"] <= 1.0 and summary["latency_ms"]["p95"] > 0


def test_corrections_export_skips_purged_jobs_and_drift_counts_them(live, tmp_path):
    """Feedback joined with the stored inputs becomes the plugin's data set (read back by
    read_dataset); a job whose inputs were purged is counted and left out; the reserved
    holdout slice never goes into a training export; drift sees the corrections."""
    key = live.new_tenant_key(admin=True)
    labels = ["circle_small", "square_large", "circle_large", "square_small"]
    with live.client(key) as client:
        ids = [_submit(client, f"The customer says the piece is {'large' if i % 2 else 'small'} ({i}).") for i in range(8)]
        finished = [wait_finished(client, job_id) for job_id in ids]
        for i, job_id in enumerate(ids):
            response = client.post(f"/v1/jobs/{job_id}/feedback", json={"labels": {"label": labels[i % 4]}})
            assert response.status_code == 201, response.text
        client.post(f"/v1/jobs/{ids[0]}/feedback", json={"comment": "a note, and the label again", "labels": {"label": "square_small"}})
        with live.db.session() as session:  # retention purges one job's inputs
            import uuid

            from twinlens.db.base import utcnow
            from twinlens.db.models import Job
            from twinlens.services.execution import purge_job_inputs

            purge_job_inputs(session, live.service.worker.context.blobs, session.get(Job, uuid.UUID(ids[1])), utcnow())
        out = tmp_path / "corrections"
        response = client.post("/v1/corrections/exports", json={"plugin": "generic", "output_dir": str(out)})
        assert response.status_code == 201, response.text
        summary = response.json()
        problem(client.post("/v1/corrections/exports", json={"plugin": "generic", "output_dir": str(out)}), 422)
        drift = client.get(f"/v1/models/{finished[0]['model_version']['id']}/drift").json()
        metrics = client.get("/metrics").text  # the embedded service: the API's and the worker's counters

    assert summary["skipped_purged"] == 1
    assert summary["rows"] + summary["skipped_held_out"] == 7 and summary["skipped_no_labels"] == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == summary["rows"] and ids[1] not in {row["id"] for row in rows}
    first = next((row for row in rows if row["id"] == ids[0]), None)
    if first is not None:  # the newest correction of a task wins; provenance is kept
        assert first["label"] == "square_small" and first["correction"]["predicted"]["label"] == finished[0]["result"]["heads"]["label"]["label"]
        assert first["correction"]["model_version"] == finished[0]["result"]["model_version"]["version"]
    dataset = GenericPlugin().read_dataset(out / "manifest.jsonl")
    assert len(dataset.samples) == len(rows) and all(s.texts["text"] for s in dataset.samples)
    today = drift["days"][-1]
    assert today["jobs"] >= 8 and 0 < today["correction_rate"] <= 1 and "label" in today["class_mix"]
    assert 0 <= today["needs_review_share"] <= 1 and today["confidence"]["label"]["mean"] > 0
    version = finished[0]["model_version"]["version"]
    for name in ("twinlens_model_corrections_total", "twinlens_model_predictions_total", "twinlens_model_decisions_total",
                 "twinlens_model_prediction_confidence_bucket"):
        assert any(line.startswith(name + "{") and f'model_version="{version}"' in line for line in metrics.splitlines()), name


@pytest.fixture(scope="session")
def second_support_ticket_bundle(tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("models") / "support-ticket-tiny-2"
    return train_sample_model("support_ticket", bundle, rows=24, epochs=1, tiny=True, preset="network", seed=1)


def test_the_retention_purge_scrubs_what_shadow_decisions_copy_of_the_inputs(live, support_ticket_bundle,  # noqa: F811
                                                                             second_support_ticket_bundle):
    """support_ticket decisions quote the OCR text; a challenger's decision in shadow does
    too, and the purge leaves no copy of it (the same search as test_retention_every_copy)."""
    key = live.new_tenant_key(admin=True)
    strings = {name: planted(name) for name in ("text", "subject", "productline", "ocrgiven")}
    with live.client(key) as client:
        for bundle, activate in ((support_ticket_bundle, True), (second_support_ticket_bundle, False)):
            response = client.post("/v1/models", json={"bundle_path": str(bundle), "scope": "tenant", "activate": activate})
            assert response.status_code == 201, response.text
        challenger = response.json()["id"]
        assert client.put(f"/v1/models/{challenger}/shadow", json={"share": 1.0}).status_code == 200
        body = {"inputs": {"text": f"My phone {strings['text']} will not charge.", "subject": f"Charging {strings['subject']}",
                           "ocr": f"ERROR {strings['ocrgiven']}"}, "metadata": {"product_line": strings["productline"]}}
        response = client.post("/v1/plugins/support_ticket/jobs", json=body)
        assert response.status_code == 202, response.text
        job = wait_finished(client, response.json()["id"], timeout=120)
        assert job["status"] == "succeeded", job
        (row,) = _wait_shadowed(live, [job["id"]])
        assert found(strings, json.dumps(row.decision).lower()), "the shadow decision copies no input: the test proves nothing"
        _finished_long_ago(live, [job["id"]], days=live.settings.retention_days + 1)
        assert tasks.purge_expired_inputs(live.service.worker.context) >= 1
        (after,) = _shadow_rows(live, [job["id"]])

    assert not found(strings, stored_text(live)), "copies of inputs outlived the purge"
    assert after.heads == row.heads, "the challenger's scores stay; only what quoted the inputs goes"
    get_plugin("support_ticket").decision_model().model_validate(after.decision)
