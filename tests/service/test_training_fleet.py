"""Training on its own queue, for real: PostgreSQL, a Redis broker, the API process, one
`twinlens worker --queues training` and one predict-only worker. Predictions submitted
while a training run is running all finish before the run does, so a training run cannot
starve a domain's predictions; the run then registers its model, inactive."""

from __future__ import annotations

import time

import pytest

from fleet import Fleet, api_fleet, tiny_spec_json
from plugin_fakes import install_fake
from test_worker_fleet import _register, _sql, _submit, _wait_all_finished
from twinlens.contract.registry import GROUP
from twinlens.generic import GenericPlugin

pytestmark = pytest.mark.slow

GATED_PLUGIN = '''
import time
from pathlib import Path

from twinlens.generic import GenericPlugin


class GatedPlugin(GenericPlugin):
    """The generic plugin, except that reading training data waits for a file named
    RELEASE beside it: the test holds a run `running` for as long as it needs to, rather
    than hoping that training happens to take long enough."""

    name = "gated_train"

    def read_dataset(self, path, options=None, *, label_schema=None):
        release = Path(path).parent / "RELEASE"
        deadline = time.monotonic() + 300
        while not release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{release} never appeared")
            time.sleep(0.1)
        return super().read_dataset(path, options, label_schema=label_schema)
'''


@pytest.fixture(scope="module")
def training_fleet(tmp_path_factory):

    root = tmp_path_factory.mktemp("training-fleet")
    plugins = install_fake(root / "site", "gated-train-plugin", {"gated_train": "gated_plugin:GatedPlugin"},
                           {"gated_plugin": GATED_PLUGIN}, GROUP)
    # Every worker's visibility timeout must exceed the training limit (Settings checks it).
    env = {"PYTHONPATH": str(plugins), "TWINLENS_TRAINING_TIME_LIMIT_SECONDS": "300",
           "TWINLENS_BROKER_VISIBILITY_TIMEOUT_SECONDS": "330"}
    with api_fleet(root, env) as running:
        yield running


def _tiny_spec() -> dict:
    return tiny_spec_json()


def _run_status(fleet: Fleet, run_id: str) -> str:
    return _sql(fleet, "SELECT status FROM training_runs WHERE id = %s", (run_id,))[0][0]


def _wait_status(fleet: Fleet, run_id: str, wanted: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _run_status(fleet, run_id)
        if status in wanted:
            return status
        time.sleep(0.2)
    raise AssertionError(f"training run {run_id} still {_run_status(fleet, run_id)} after {timeout}s")


def test_predictions_finish_while_a_training_worker_is_busy(training_fleet, generic_bundle):
    fleet = training_fleet
    data = GenericPlugin().make_sample_dataset(fleet.root / "train-data", n=60, seed=21)
    out = fleet.root / "bundles" / "gated-1"
    with fleet.client() as client:
        active = _register(client, generic_bundle)
        fleet.start_worker("trainer", "training")
        fleet.start_worker("predictor", "predict.generic")
        for name in ("trainer", "predictor"):
            fleet.wait_worker_ready(name)
        response = client.post("/v1/training-runs", json={
            "plugin": "gated_train", "data_path": str(data), "output_dir": str(out), "epochs": 1, "model_spec": _tiny_spec(),
        })
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        _wait_status(fleet, run_id, {"running"}, timeout=60)

        ids = [_submit(client, "generic", i) for i in range(30)]
        _wait_all_finished(fleet, ids, timeout=120)
        assert _run_status(fleet, run_id) == "running", "every job finished while the training worker was still busy"

        (data.parent / "RELEASE").touch()
        assert _wait_status(fleet, run_id, {"succeeded", "failed"}, timeout=300) == "succeeded", \
            client.get(f"/v1/training-runs/{run_id}").json()["error"]
        run = client.get(f"/v1/training-runs/{run_id}").json()
        trained = client.get(f"/v1/models/{run['model_version']['id']}").json()
        still_active = client.get(f"/v1/models/{active['id']}").json()

    statuses = _sql(fleet, "SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status", (ids,))
    assert statuses == [("succeeded", 30)]
    assert fleet.jobs_done_by("predictor") == 30 and fleet.jobs_done_by("trainer") == 0
    trainer_log = (fleet.root / "worker-trainer.log").read_text(errors="replace")
    assert f"training run {run_id}" in trainer_log and "Task twinlens.train[" in trainer_log
    assert "Task twinlens.train[" not in (fleet.root / "worker-predictor.log").read_text(errors="replace")
    assert trained["plugin"] == "gated_train" and trained["is_active"] is False and trained["bundle_path"] == str(out)
    assert run["metrics"]["data_rows"] == 60 and run["metrics"]["validation"]["heads"]
    assert still_active["is_active"], "training does not change which model serves"
