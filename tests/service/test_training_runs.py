"""Training runs over real HTTP against the running service (PostgreSQL and SQLite): the
in-process worker's training thread trains a tiny `generic` model, registers it inactive
and records its metrics; bad requests leave no row; redelivery and lost workers are
handled by the run's row, not by the broker."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from service_helpers import problem, wait_finished
from sqlalchemy import func, select

from twinlens.cli.service import tiny_encoders
from twinlens.contract.bundle_files import read_bundle_config
from twinlens.db.base import utcnow
from twinlens.db.models import ModelVersion, TrainingRun
from twinlens.generic import GenericPlugin
from twinlens.worker import tasks

RUNS = "/v1/training-runs"


def tiny_spec() -> dict[str, Any]:
    """tiny_encoders() as the JSON a client sends in `model_spec`."""
    return {name: value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            for name, value in tiny_encoders().items()}


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory) -> Path:
    return GenericPlugin().make_sample_dataset(tmp_path_factory.mktemp("train-data"), n=60, seed=11)


def _body(data: Path, out: Path, **extra: Any) -> dict[str, Any]:
    return {"plugin": "generic", "data_path": str(data), "output_dir": str(out), "epochs": 1,
            "model_spec": tiny_spec(), **extra}


def wait_run(client, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"{RUNS}/{run_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"training run {run_id} did not finish in {timeout}s: {body}")


def _run_count(live) -> int:
    with live.db.session() as session:
        return session.scalar(select(func.count()).select_from(TrainingRun))


def test_a_run_trains_registers_an_inactive_model_and_records_metrics(live, sample_data, tmp_path):
    key = live.new_tenant_key(admin=True)
    out = tmp_path / "bundles" / "generic-trained"
    body = _body(sample_data, out, scope="tenant", seed=3, dataset={"label_cols": ["label", "tags"]})
    with live.client(key) as client:
        response = client.post(RUNS, json=body)
        assert response.status_code == 202, response.text
        created = response.json()
        assert response.headers["location"] == f"{RUNS}/{created['id']}"
        assert created["status"] in ("queued", "running", "succeeded")
        run = wait_run(client, created["id"])
        assert run["status"] == "succeeded", run["error"]
        model = client.get(f"/v1/models/{run['model_version']['id']}").json()
        listed = client.get(RUNS).json()["data"]

    assert run["attempts"] == 1 and run["error"] is None
    assert run["request"]["data_path"] == str(sample_data) and run["request"]["output_dir"] == str(out)
    assert run["request"]["dataset"] == {"label_cols": ["label", "tags"]}
    assert run["request"]["model_spec"]["image_encoder"]["name"] == "test_resnet"
    assert run["request"]["train_config"]["epochs"] == 1 and run["request"]["train_config"]["seed"] == 3
    assert model["is_active"] is False, "an admin activates a trained model, not the run"
    assert model["scope"] == "tenant" and model["bundle_path"] == str(out)
    assert set(model["label_schema"]["tasks"][i]["name"] for i in range(2)) == {"label", "tags"}
    config = read_bundle_config(out)  # the bundle verifies (hashes, no pickle)
    assert run["model_version"]["version"] == model["version"] == f"generic@{config['version']}"
    metrics = run["metrics"]
    assert metrics["bundle_version"] == config["version"]
    assert metrics["epochs_run"] == 1 and metrics["data_rows"] == 60 and metrics["skipped_rows"] == 0
    assert set(metrics["validation"]["heads"]) == {"label", "tags"}
    assert 0.0 <= metrics["validation"]["heads"]["label"]["accuracy"] <= 1.0
    assert "per_class" not in metrics["validation"]["heads"]["label"]
    assert metrics["validation"]["n"] == config["data"]["validation"]
    assert [item["id"] for item in listed] == [run["id"]], "the list shows this tenant's runs"

    # The trained model serves once activated (for this tenant only).
    with live.client(key) as client:
        assert client.post(f"/v1/models/{model['id']}/activate").status_code == 200
        job = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "a large red item"}})
        finished = wait_finished(client, job.json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["result"]["model_version"]["id"] == model["id"]
    assert set(finished["result"]["heads"]) == {"label", "tags"}


def test_runs_are_admin_only_and_tenant_private(live, sample_data, tmp_path):
    owner, other_admin, plain = (live.new_tenant_key(admin=True), live.new_tenant_key(admin=True), live.new_tenant_key())
    before = _run_count(live)
    with live.client(plain) as client:
        problem(client.post(RUNS, json=_body(sample_data, tmp_path / "x")), 403)
        problem(client.get(RUNS), 403)
    assert _run_count(live) == before, "a refused request left a row"
    with live.client(owner) as client:
        response = client.post(RUNS, json=_body(sample_data, tmp_path / "y", fusion="no-such-fusion"))
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        failed = wait_run(client, run_id)
    with live.client(other_admin) as client:
        problem(client.get(f"{RUNS}/{run_id}"), 404)
        assert client.get(RUNS).json()["data"] == []
    with live.client(plain) as client:
        problem(client.get(f"{RUNS}/{run_id}"), 403)
    # Names only the engine knows are checked by the worker, before any data is read.
    assert failed["status"] == "failed"
    assert failed["error"]["field"] == "fusion" and "no-such-fusion" in failed["error"]["reason"]
    assert failed["model_version"] is None and not (tmp_path / "y").exists()


def _not_a_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "holds-files"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    return folder


BAD_REQUESTS = {
    "unknown plugin": (422, "plugin", lambda d, t: {"plugin": "no_such_plugin"}),
    "missing data path": (422, "data_path", lambda d, t: {"data_path": str(t / "nowhere" / "manifest.jsonl")}),
    "relative data path": (422, "data_path", lambda d, t: {"data_path": "data/manifest.jsonl"}),
    "output folder holding other files": (422, "output_dir", lambda d, t: {"output_dir": str(_not_a_bundle(t))}),
    "output is a file": (422, "output_dir", lambda d, t: {"output_dir": str(d)}),
    "unknown model spec field": (422, "model_spec", lambda d, t: {"model_spec": {"not_a_field": 1}}),
    "bad train config value": (422, "train_config", lambda d, t: {"train_config": {"loss": "hinge"}}),
    "unknown modality": (422, "modalities", lambda d, t: {"modalities": ["smell"]}),
    "unknown dataset option": (422, "body.dataset.colour_col", lambda d, t: {"dataset": {"colour_col": "c"}}),
    "epochs zero": (422, "body.epochs", lambda d, t: {"epochs": 0}),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_problem_and_leave_no_row(live, sample_data, tmp_path, case):
    status, field, change = BAD_REQUESTS[case]
    body = {**_body(sample_data, tmp_path / "out"), **change(sample_data, tmp_path)}
    before = _run_count(live)
    with live.client() as client:
        answer = problem(client.post(RUNS, json=body), status)
    assert _run_count(live) == before, "a rejected request left a training run behind"
    fields = [error["field"] for error in answer.get("errors", [])]
    assert any(name == field or name.startswith(field) for name in fields) or field in answer["detail"], answer


def test_output_dir_of_a_registered_model_or_an_open_run_is_refused(live, generic_bundle, sample_data, tmp_path):
    before = _run_count(live)
    with live.client() as client:
        body = problem(client.post(RUNS, json=_body(sample_data, generic_bundle)), 409)
        assert body["model_id"]
    assert _run_count(live) == before
    busy = tmp_path / "busy"
    with live.db.session() as session:  # a run another worker holds, writing to `busy`
        session.add(TrainingRun(plugin="generic", status="running", request={"output_dir": str(busy)}, attempts=1,
                                started_at=utcnow()))
    with live.client() as client:
        assert problem(client.post(RUNS, json=_body(sample_data, busy)), 409)["training_run_id"]


def test_a_redelivered_run_does_nothing_and_a_lost_one_is_failed(live, sample_data, tmp_path):
    with live.client() as client:
        response = client.post(RUNS, json=_body(sample_data, tmp_path / "again", fusion="still-not-a-fusion"))
        finished = wait_run(client, response.json()["id"])
    assert finished["status"] == "failed"
    context = live.service.worker.context
    # The broker may deliver the same id twice: the second delivery claims nothing.
    assert tasks.run_training(finished["id"], context) is None
    with live.db.session() as session:
        again = session.get(TrainingRun, uuid.UUID(finished["id"]))
        assert (again.status, again.attempts) == ("failed", 1)
        overdue = utcnow() - timedelta(seconds=live.settings.training_time_limit_seconds
                                       + live.settings.training_stale_grace_seconds + 60)
        lost = TrainingRun(plugin="generic", status="running", request={"output_dir": str(tmp_path / "lost")},
                           attempts=1, started_at=overdue)
        session.add(lost)
        session.flush()
        lost_id = lost.id
    swept = tasks.sweep_training(context, queued_older_than=3600.0)
    assert swept["training_failed"] >= 1
    with live.db.session() as session:
        row = session.get(TrainingRun, lost_id)
        assert row.status == "failed" and "submit the run again" in row.error["reason"]


def test_bad_rows_fail_the_run_naming_each_row(live, tmp_path):
    data = tmp_path / "bad.jsonl"
    rows = [{"text": f"row {i}", "label": "a" if i % 2 else "b"} for i in range(20)]
    rows[4]["label"] = None
    rows[9] = {"text": "no label column"}
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with live.client() as client:
        response = client.post(RUNS, json=_body(data, tmp_path / "bad-out"))
        assert response.status_code == 202, response.text
        failed = wait_run(client, response.json()["id"])
    assert failed["status"] == "failed", failed
    assert failed["error"]["field"] == "data_path"
    assert {row["line"] for row in failed["error"]["rows"]} >= {10}
    with live.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.bundle_path == str(tmp_path / "bad-out"))) == 0


def test_training_has_its_own_queue_and_time_limit_below_the_visibility_timeout():
    from twinlens.cli.workers import default_queues
    from twinlens.queue import TRAIN_TASK, TRAINING_QUEUE
    from twinlens.settings import Settings
    from twinlens.worker.celery_app import make_celery

    defaults = Settings()
    assert defaults.training_time_limit_seconds == 6 * 3600
    assert defaults.training_time_limit_seconds < defaults.broker_visibility_timeout_seconds
    with pytest.raises(ValueError, match="training_time_limit_seconds must be below"):
        Settings(training_time_limit_seconds=1000, broker_visibility_timeout_seconds=900)
    # A default worker never trains: a run would hold up the predictions queued behind it.
    assert TRAINING_QUEUE not in default_queues() and "predict.generic" in default_queues()
    make_celery(Settings(broker_url="redis://127.0.0.1:6379/15"))  # an app with the defaults first, in this process
    app = make_celery(Settings(broker_url="redis://127.0.0.1:6379/15", training_time_limit_seconds=360,
                               broker_visibility_timeout_seconds=400))
    train = app.tasks[TRAIN_TASK]
    assert (train.time_limit, train.soft_time_limit) == (360, 342)
    assert app.conf.task_time_limit == 300, "predictions keep their own, short limit"
