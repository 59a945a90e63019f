"""The command line's user-error paths and the plugin commands (no training here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from plugin_fakes import install_fake, plugin_source
from typer.testing import CliRunner

from twinlens.cli import app
from twinlens.generic import GenericPlugin

runner = CliRunner()
TWINLENS = str(Path(sys.executable).with_name("twinlens"))


def invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return GenericPlugin().make_sample_dataset(tmp_path_factory.mktemp("sample"), n=16, seed=2)


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_help_lists_the_commands_without_importing_torch():
    probe = "import sys; from twinlens.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    result = subprocess.run([TWINLENS, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train", "evaluate", "predict", "plugins", "plugin"):
        assert command in result.stdout


def test_unknown_plugin(sample, tmp_path):
    result = invoke("train", "--plugin", "nope", "--data", sample, "--out", tmp_path / "m")
    assert_user_error(result, "unknown plugin 'nope'", "generic")


def test_bad_rows_are_listed_with_line_numbers(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"image": "gone.png", "text": "x", "label": "a"}\n{oops\n{"text": "y", "label": "b"}\n')
    result = invoke("train", "--plugin", "generic", "--data", manifest, "--out", tmp_path / "m")
    assert_user_error(result, "2 bad row(s)", "line 1: image: gone.png: file not found", "line 2: json: malformed JSON")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fusion", "zzz"], "--fusion zzz: unknown; choose from concat"),
        (["--modalities", "image,ocr"], "--modalities image,ocr: choose from image, text"),
        (["--image-encoder", "not_a_model"], "--image-encoder not_a_model: not a timm model name"),
        (["--task-kind", "label=ordinal"], "--task-kind label=ordinal: kind must be one of"),
        (["--task-kind", "label"], "--task-kind expects name=value"),
        (["--label-col", "nothere"], "no column 'nothere'"),
    ],
)
def test_bad_flag_values(sample, tmp_path, flags, message):
    result = invoke("train", "--plugin", "generic", "--data", sample, "--out", tmp_path / "m", *flags)
    assert_user_error(result, message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"model": {}, "extra": {}}', "expected an object with only the keys"),
        ('{"model": {"hidden_dim": "wide"}}', "model spec: hidden_dim"),
        ('{"train": {"epochs": 0, "loss": "hinge"}}', "training config: "),
        ('{"model": {"no_such_field": 1}}', "no_such_field"),
    ],
)
def test_bad_spec_files(sample, tmp_path, content, message):
    spec = tmp_path / "spec.json"
    spec.write_text(content)
    result = invoke("train", "--plugin", "generic", "--data", sample, "--out", tmp_path / "m", "--spec", spec)
    assert_user_error(result, "error: ", message)


def test_train_refuses_to_replace_a_folder_that_is_not_a_bundle(sample, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    result = invoke("train", "--plugin", "generic", "--data", sample, "--out", precious)
    assert_user_error(result, "not empty and holds no model bundle")
    assert (precious / "todo.txt").read_text() == "keep me"


def test_missing_data_file(tmp_path):
    result = invoke("train", "--plugin", "generic", "--data", tmp_path / "none.jsonl", "--out", tmp_path / "m")
    assert_user_error(result, "none.jsonl: no such file")


def test_evaluate_and_predict_refuse_a_folder_that_is_not_a_bundle(sample, tmp_path):
    result = invoke("evaluate", "--model", tmp_path, "--data", sample)
    assert_user_error(result, "not a model bundle")
    result = invoke("predict", "--model", tmp_path, "--text", "hello")
    assert_user_error(result, "not a model bundle")


def test_plugins_lists_generic_as_table_and_json():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    assert "generic" in result.stdout and "(learnt from" in result.stdout
    listed = json.loads(invoke("plugins", "--json").stdout)
    generic = next(entry for entry in listed if entry["name"] == "generic")
    assert generic["label_schema"] is None
    assert generic["input_schema"]["texts"][0]["name"] == "text"


def test_plugins_reports_a_broken_plugin_loudly(tmp_path):
    """A real `twinlens plugins` process with a broken plugin installed on its path."""
    module = f"broken_{uuid.uuid4().hex[:8]}"
    ok_module = f"fine_{uuid.uuid4().hex[:8]}"
    install_fake(tmp_path, "brokendist", {"shattered": f"{module}:Nope", "fine": f"{ok_module}:FakePlugin"},
                 {module: "raise RuntimeError('half-installed')\n", ok_module: plugin_source("fine")}, "twinlens.plugins")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([TWINLENS, "plugins", "--json"], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert "half-installed" in listed["shattered"]["error"]
    assert listed["fine"]["label_schema"]["tasks"][0]["name"] == "t"
    assert "generic" in listed
    assert "1 plugin(s) failed to load: shattered" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugin_new_refuses_bad_names_and_existing_folders(tmp_path):
    assert_user_error(invoke("plugin", "new", "Bad Name", "--dir", tmp_path), "plugin name 'Bad Name'")
    assert_user_error(invoke("plugin", "new", "generic", "--dir", tmp_path), "already registered")
    assert invoke("plugin", "new", "leaf_spots", "--dir", tmp_path).exit_code == 0
    assert_user_error(invoke("plugin", "new", "leaf_spots", "--dir", tmp_path), "already exists")
