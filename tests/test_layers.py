"""The layer rules of docs/architecture.md hold, and breaking one is caught.

`.importlinter` states them as import-linter contracts; these tests run `lint-imports`
on the real tree and on a copy of it with one forbidden import planted, so the contracts
cannot silently stop checking (a renamed package, a typo in a module name)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
PACKAGES = {"twinlens": ROOT / "src" / "twinlens",
            "twinlens_chest_xray": ROOT / "plugins" / "chest_xray" / "src" / "twinlens_chest_xray",
            "twinlens_support_ticket": ROOT / "plugins" / "support_ticket" / "src" / "twinlens_support_ticket"}


def lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    return subprocess.run([*LINT, str(cwd / ".importlinter"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_layer_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The three packages and the contracts, importable from tmp_path first on the path."""
    for name, source in PACKAGES.items():
        shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@pytest.mark.parametrize(("module", "planted", "broken"), [
    ("twinlens/api/routes/jobs.py", "import twinlens.engine.model", "The API never imports the engine"),
    ("twinlens/console/routes.py", "import twinlens.worker.tasks", "The API never imports the engine"),
    ("twinlens/services/jobs.py", "import twinlens.api.app", "Services never import the API"),
    ("twinlens/contract/schema.py", "import torch", "The contract imports nothing above it"),
    ("twinlens_support_ticket/dataset.py", "import twinlens.generic.reader", "One plugin never imports another"),
    ("twinlens_chest_xray/labels.py", "import twinlens.db.models", "Plugins import the contract"),
    ("twinlens/connectors/zendesk.py", "import twinlens.worker.tasks", "Helpdesk connectors import the contract"),
])
def test_a_planted_violation_breaks_its_contract(tree_copy: Path, module: str, planted: str, broken: str):
    target = tree_copy / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by tests/test_layers.py\n")
    result = lint(tree_copy, pythonpath=tree_copy)
    assert result.returncode != 0, result.stdout
    broken_lines = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any(line.startswith(broken) for line in broken_lines), result.stdout
