"""Bulk scoring batches on the production path: the API process in broker mode, a Redis
broker and a `twinlens worker` process (Celery) on PostgreSQL. The batch is scored in
several slices (the worker hands it back to the queue between them), and a job submitted
while it runs is answered between two slices."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
from fleet import Fleet, RedisServer
from service_helpers import wait_finished

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from service_db import fresh_database

    root = tmp_path_factory.mktemp("batch-fleet")
    with fresh_database() as database_url:
        redis = RedisServer(root / "redis").start()
        # Slices of 1 s (micro-batches of 8), so a 400-row file takes several.
        # Slices of 0.1 s: a quiet machine scores these 400 text rows in about 0.4 s (the
        # default, 60 s, is shown by test_bulk_defaults_hand_a_big_file_back_within_the_task_limit).
        env = {"TWINLENS_BULK_SLICE_SECONDS": "0.1", "TWINLENS_BULK_MICRO_BATCH_SIZE": "8"}
        # A loaded machine can take minutes to import the API and the worker.
        running = Fleet(root, database_url, redis, extra_env=env).start_api(timeout=300)
        try:
            yield running
        finally:
            running.close()
            redis.stop()


def test_a_celery_worker_scores_a_batch_in_slices_and_serves_jobs_between_them(fleet, generic_bundle):
    fleet.start_worker("bulk", "predict.generic")
    fleet.wait_worker_ready("bulk", timeout=300)
    rows = "".join(json.dumps({"id": f"r{i}", "text": f"a small red square number {i}"}) + "\n" for i in range(400))
    with fleet.client() as client:
        assert client.post("/v1/models", json={"bundle_path": str(generic_bundle), "activate": True}).status_code == 201
        warm_up = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "the worker loads the model"}}).json()
        assert wait_finished(client, warm_up["id"], timeout=300)["status"] == "succeeded"
        batch = client.post("/v1/plugins/generic/batches", files={"file": ("rows.jsonl", rows.encode(), "application/x-ndjson")})
        assert batch.status_code == 202, batch.text
        batch_id = batch.json()["id"]
        job = client.post("/v1/plugins/generic/jobs", json={"inputs": {"text": "one ticket in between"}}).json()
        job = wait_finished(client, job["id"], timeout=300)
        assert job["status"] == "succeeded"
        deadline = time.monotonic() + 600
        while (status := client.get(f"/v1/batches/{batch_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        lines = [json.loads(line) for line in client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    assert status["status"] == "succeeded" and status["rows"]["succeeded"] == 400, status
    assert [line["id"] for line in lines] == [f"r{i}" for i in range(400)]
    assert {line["status"] for line in lines} == {"succeeded"}
    log = (fleet.root / "worker-bulk.log").read_text(errors="replace")
    slices = re.findall(r"twinlens\.score_batch\[[^\]]+\] succeeded in [0-9.]+s: \{'claimed': 1", log)
    assert len(slices) >= 2, "the batch was scored in one task: nothing could be served between its slices"
    # The job did not wait for the whole file.
    assert datetime.fromisoformat(job["finished_at"]) < datetime.fromisoformat(status["finished_at"])


def test_bulk_defaults_hand_a_big_file_back_within_the_task_limit():
    """The defaults a user gets: a slice is a minute, well inside the task time limit (a
    worker never holds the queue for a whole file, nor is killed mid-slice), in batches
    of a useful size."""
    from twinlens.settings import Settings

    defaults = Settings()
    assert defaults.bulk_slice_seconds == 60
    assert defaults.bulk_slice_seconds <= defaults.task_time_limit_seconds / 2
    assert 8 <= defaults.bulk_micro_batch_size <= 256
