"""`twinlens plugin new`: the generated package installs, registers and passes its tests.

The package is really built and installed by pip, but into a private target folder put on
PYTHONPATH of the processes that use it: the shared virtual environment (and every other
test running against it) never sees the throwaway plugin.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from twinlens.scaffold import LAYOUT, ScaffoldError, create_plugin, names_for, render

BIN = Path(sys.executable).parent


def test_names_for_every_spelling():
    assert names_for("leaf-spots") == {
        "name": "leaf-spots",
        "module": "twinlens_leaf_spots",
        "dist_name": "twinlens-leaf-spots",
        "class_name": "LeafSpotsPlugin",
        "title": "Leaf spots",
        "twinlens_version": names_for("x")["twinlens_version"],
    }
    for bad in ("", "Leaf", "9lives", "a b", "a--b", "a_", "-a", "x" * 41, "a.b"):
        with pytest.raises(ScaffoldError):
            names_for(bad)


def test_rendered_files_are_valid_python_and_toml():
    files = render("damage_report")
    assert set(files) == {path.format(module="twinlens_damage_report") for path in LAYOUT}
    for path, content in files.items():
        assert "$" not in content.replace("$$", ""), path  # every placeholder was filled
        if path.endswith(".py"):
            ast.parse(content, filename=path)
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "twinlens-damage-report"
    assert project["project"]["entry-points"]["twinlens.plugins"] == {"damage_report": "twinlens_damage_report:DamageReportPlugin"}
    assert "import torch" not in files["src/twinlens_damage_report/plugin.py"]


def test_create_refuses_to_overwrite(tmp_path):
    created = create_plugin("leaf_spots", tmp_path)
    assert created.root == tmp_path / "twinlens-leaf-spots"
    assert all(path.is_file() for path in created.files)
    marker = created.root / "README.md"
    marker.write_text("mine")
    with pytest.raises(ScaffoldError, match="already exists"):
        create_plugin("leaf_spots", tmp_path)
    assert marker.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["twinlens-leaf-spots"]  # no staging leftovers


def test_generated_plugin_installs_registers_and_passes_its_tests(tmp_path):
    result = subprocess.run([str(BIN / "twinlens"), "plugin", "new", "leaf-spots", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    package = tmp_path / "twinlens-leaf-spots"
    site = tmp_path / "site"
    install = subprocess.run(
        [str(BIN / "pip"), "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--target", str(site), str(package)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}

    listed = subprocess.run([str(BIN / "twinlens"), "plugins", "--json"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert '"name": "leaf-spots"' in listed.stdout

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package, capture_output=True, text=True, env=env, timeout=300,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "9 passed" in tests.stdout


def test_generated_tests_fail_when_the_plugin_is_not_installed(tmp_path):
    """The registration check is real: source on the path alone is not an installed plugin."""
    created = create_plugin("unplugged", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(created.root / "src")}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", "-k", "registered"],
        cwd=created.root, capture_output=True, text=True, env=env, timeout=300,
    )
    assert tests.returncode == 1
    assert "no 'twinlens.plugins' entry point named 'unplugged'" in tests.stdout
