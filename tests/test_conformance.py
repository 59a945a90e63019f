"""Every registered plugin passes the conformance kit; the kit itself catches breakage."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from twinlens.contract.registry import get_plugin
from twinlens.generic import GenericPlugin
from twinlens.testing import (
    CHECKS,
    INSTANCE_CHECKS,
    ConformanceError,
    check_decide,
    check_id,
    check_prepare,
    check_registered,
    check_sample_dataset,
    check_schemas_round_trip,
    check_torch_free_import,
    registered_plugin_names,
    run_conformance,
)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
@pytest.mark.parametrize("plugin_name", registered_plugin_names())
def test_registered_plugin_conforms(plugin_name: str, check, tmp_path: Path):
    check(get_plugin(plugin_name), tmp_path)


def test_the_generic_plugin_is_among_those_checked():
    assert "generic" in registered_plugin_names()


# -- the kit catches broken plugins (so the suite above can fail) ---------------------------
class ForgetfulPlugin(GenericPlugin):
    """decide() without needs_review."""

    name = "forgetful"

    def decide(self, prediction):
        return {"label": "x"}


class OverconfidentPlugin(GenericPlugin):
    """Never asks for review, even when the model cannot tell the classes apart."""

    name = "overconfident"

    def decide(self, prediction):
        return {"needs_review": False}


class SilentReviewPlugin(GenericPlugin):
    name = "silent_review"

    def decide(self, prediction):
        return {"needs_review": True}


class UndeclaredFieldPlugin(GenericPlugin):
    """decide() adds a field its decision_model() does not declare."""

    name = "undeclared_field"

    def decide(self, prediction):
        return {**super().decide(prediction), "priority": "high"}


class RandomSamplesPlugin(GenericPlugin):
    """A sample set that changes from run to run for one seed."""

    name = "random_samples"
    calls = 0

    def make_sample_dataset(self, out_dir, n=200, seed=0):
        RandomSamplesPlugin.calls += 1
        return super().make_sample_dataset(out_dir, n=n, seed=seed + RandomSamplesPlugin.calls)


class SloppyPreparePlugin(GenericPlugin):
    """prepare() accepts an input with nothing in it."""

    name = "sloppy_prepare"

    def prepare(self, raw):
        from twinlens.contract.sample import Sample

        return Sample(texts={"text": raw.texts.get("text")})


@pytest.mark.parametrize(
    ("plugin", "check", "message"),
    [
        (ForgetfulPlugin(), check_decide, "needs_review to a bool"),
        (OverconfidentPlugin(), check_decide, "evenly unsure multiclass prediction must set needs_review"),
        (SilentReviewPlugin(), check_decide, "needs a review_reason"),
        (UndeclaredFieldPlugin(), check_decide, "does not match decision_model.*priority"),
        (RandomSamplesPlugin(), check_sample_dataset, "not deterministic"),
        (SloppyPreparePlugin(), check_prepare, "dropped the image"),
        (ForgetfulPlugin(), check_registered, "no 'twinlens.plugins' entry point named 'forgetful'"),
    ],
    ids=["decide-no-flag", "decide-never-reviews", "decide-no-reason", "decide-undeclared-field", "sample-nondeterministic", "prepare", "unregistered"],
)
def test_the_kit_fails_broken_plugins(plugin, check, message, tmp_path):
    with pytest.raises(ConformanceError, match=message):
        check(plugin, tmp_path)


def test_undeclared_labels_in_the_sample_set_fail(tmp_path):
    from twinlens.contract.schema import Label, LabelSchema, Task

    class NarrowSchemaPlugin(GenericPlugin):
        name = "narrow"

        def label_schema(self):
            return LabelSchema(tasks=(Task(name="label", kind="multiclass", labels=(Label(name="a"), Label(name="b"))),))

    with pytest.raises(ConformanceError, match="label schema differs"):
        check_sample_dataset(NarrowSchemaPlugin(), tmp_path)


def test_schemas_that_do_not_round_trip_fail(tmp_path):
    class OddDescribe(GenericPlugin):
        name = "odd_describe"

        def describe(self):
            return {**super().describe(), "when": object()}

    with pytest.raises(ConformanceError, match="describe"):
        check_schemas_round_trip(OddDescribe(), tmp_path)


def test_a_module_importing_torch_fails(tmp_path, monkeypatch):
    module = f"heavy_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import torch\nfrom twinlens.generic import GenericPlugin\n\n"
        "class HeavyPlugin(GenericPlugin):\n    name = 'heavy'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    heavy = __import__(module).HeavyPlugin()
    with pytest.raises(ConformanceError, match="loads torch"):
        check_torch_free_import(heavy, tmp_path)


def test_run_conformance_runs_every_instance_check(tmp_path):
    run_conformance(GenericPlugin(), tmp_path, INSTANCE_CHECKS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(check_id(c) for c in INSTANCE_CHECKS)
