"""The learning loop's operator commands on the embedded SQLite database: models
list/register/promote/rollback/history, training start/list/show, data export."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from twinlens.cli import app
from twinlens.generic import GenericPlugin


@pytest.fixture
def cli(tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("TWINLENS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TWINLENS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (args, result.output, result.exception)
        return result.output

    run("db", "upgrade")
    run("keys", "create", "--tenant", "acme", "--admin")
    return run


def test_models_register_promote_rollback_and_history(cli, generic_bundle, second_generic_bundle):
    first = cli("models", "register", str(generic_bundle), "--tenant", "acme", "--activate").split()[0]
    second = cli("models", "register", str(second_generic_bundle), "--tenant", "acme").split()[0]
    listed = json.loads(cli("models", "list", "--tenant", "acme", "--json"))
    assert {row["id"]: row["aliases"] for row in listed} == {first: ["champion"], second: []}

    blocked = cli("models", "promote", second, "--tenant", "acme", code=1)  # no holdout measured it
    assert "[FAIL] holdout" in blocked and "blocked" in blocked
    assert "needs a reason" in cli("models", "promote", second, "--tenant", "acme", "--force", code=2)
    assert "unknown threshold" in cli("models", "promote", second, "--tenant", "acme", "--threshold", "nope=1", code=2)
    assert "forced past the gate" in cli("models", "promote", second, "--tenant", "acme", "--force", "--reason", "hotfix")
    assert first in cli("models", "rollback", second, "--tenant", "acme")
    assert "not the champion" in cli("models", "rollback", second, "--tenant", "acme", code=2)

    history = json.loads(cli("models", "history", "--plugin", "generic", "--tenant", "acme", "--json"))
    assert [(h["action"], h["model_id"], h["forced"]) for h in history] == [
        ("rollback", first, False), ("promote", second, True), ("activate", first, False)]
    assert history[1]["reason"] == "hotfix" and history[1]["gate_report_id"]
    assert "no tenant" in cli("models", "list", "--tenant", "nobody", code=2)


def test_training_start_list_show_and_data_export(cli, tmp_path):
    data = GenericPlugin().make_sample_dataset(tmp_path / "base", n=12, seed=1)
    run_id = cli("training", "start", "--plugin", "generic", "--data", str(data), "--out", str(tmp_path / "out"),
                 "--tenant", "acme", "--from-corrections", "--since", "2026-01-01", "--preset", "network", "--epochs", "1").strip().splitlines()[-1]
    # (with no broker here, the line before says the run stays queued until a worker sweeps it)
    assert run_id in cli("training", "list", "--tenant", "acme")
    shown = json.loads(cli("training", "show", run_id, "--tenant", "acme"))
    assert shown["kind"] == "corrections" and shown["status"] == "queued" and shown["request"]["since"] == "2026-01-01"
    assert "not a date" in cli("training", "start", "--plugin", "generic", "--data", str(data), "--out", str(tmp_path / "o2"),
                               "--tenant", "acme", "--from-corrections", "--since", "soon", code=2)

    summary = json.loads(cli("data", "export", "--from-feedback", "--plugin", "generic", "--tenant", "acme",
                             "--out", str(tmp_path / "export")))
    assert summary["rows"] == 0 and (tmp_path / "export" / "manifest.jsonl").read_text() == ""
    assert "not an empty folder" in cli("data", "export", "--from-feedback", "--plugin", "generic", "--tenant", "acme",
                                        "--out", str(data.parent), code=2)
    assert "--from-feedback" in cli("data", "export", "--plugin", "generic", "--tenant", "acme", "--out", str(tmp_path / "x"),
                                    code=2)
