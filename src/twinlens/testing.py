"""Conformance kit: the checks every TwinLens plugin must pass.

Each check is a function ``check(plugin, workdir)`` that raises (AssertionError,
PluginError...) when the plugin breaks the contract; `workdir` is an empty folder it
may write to. Use them from pytest in a plugin's own tests::

    import pytest
    from twinlens.testing import CHECKS, check_id
    from my_plugin import MyPlugin

    @pytest.mark.parametrize("check", CHECKS, ids=check_id)
    def test_conformance(check, tmp_path):
        check(MyPlugin(), tmp_path)

`CHECKS` includes `check_registered` (the plugin is discoverable through its
``twinlens.plugins`` entry point, so the package must be installed); `INSTANCE_CHECKS`
leaves it out. TwinLens's own suite runs `CHECKS` on every registered plugin.
This module never imports torch.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Dataset, Plugin, RawInput
from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens.contract.registry import default_registry, validate_plugin
from twinlens.contract.sample import Sample
from twinlens.contract.schema import InputSchema, LabelSchema, Task
from twinlens.contract.spec import ModelSpec, TrainConfig

Check = Callable[[Plugin, Path], None]
SAMPLE_ROWS = 24  # small: every check stays well under a second for a sane plugin
SAMPLE_SEED = 7


class ConformanceError(AssertionError):
    """The plugin breaks the contract; the message names the plugin and the rule."""

    def __init__(self, plugin: Plugin, rule: str):
        super().__init__(f"plugin {getattr(plugin, 'name', type(plugin).__name__)!r}: {rule}")


def _require(condition: bool, plugin: Plugin, rule: str) -> None:
    if not condition:
        raise ConformanceError(plugin, rule)


# -- declarations ------------------------------------------------------------------------
def check_validates(plugin: Plugin, workdir: Path) -> None:
    """The registry's own validation passes (name, api_version, schemas, model spec)."""
    validate_plugin(plugin)


def check_registered(plugin: Plugin, workdir: Path) -> None:
    """The installed entry point under the plugin's name loads this very class."""
    registry = default_registry()
    _require(plugin.name in registry.names(), plugin, f"no 'twinlens.plugins' entry point named {plugin.name!r}; is the package installed?")
    _require(type(registry.get(plugin.name)) is type(plugin), plugin, "the entry point loads a different class")


def check_schemas_round_trip(plugin: Plugin, workdir: Path) -> None:
    """Every declaration serialises to JSON and reads back equal."""
    schema = plugin.label_schema()
    if schema is not None:
        _require(LabelSchema.model_validate_json(schema.model_dump_json()) == schema, plugin, "label schema does not round-trip")
    inputs = plugin.input_schema()
    _require(InputSchema.model_validate_json(inputs.model_dump_json()) == inputs, plugin, "input schema does not round-trip")
    spec = plugin.default_model_spec()
    _require(ModelSpec.model_validate_json(spec.model_dump_json()) == spec, plugin, "default model spec does not round-trip")
    config = plugin.training_defaults()
    _require(TrainConfig.model_validate_json(config.model_dump_json()) == config, plugin, "training defaults do not round-trip")
    _require(_is_json(plugin.describe()), plugin, "describe() is not plain JSON")
    for text in (plugin.name, plugin.version, plugin.description, plugin.intended_use):
        _require(isinstance(text, str), plugin, "name, version, description and intended_use must be strings")


def _is_json(value: object) -> bool:
    """Serialises with the standard encoder alone (no default= hook) and reads back stable."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return json.dumps(json.loads(text), allow_nan=False) == text


# -- data --------------------------------------------------------------------------------
# Reading a sample set can be slow (OCR, DICOM), so checks share one read per plugin
# instance; check_sample_dataset always reads afresh.
_sample_cache: dict[int, tuple[Plugin, Dataset]] = {}


def sample_dataset(plugin: Plugin, workdir: Path, *, n: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED, fresh: bool = False) -> Dataset:
    """Generate the plugin's sample set under workdir and read it back with defaults."""
    cached = _sample_cache.get(id(plugin))
    if not fresh and cached is not None and cached[0] is plugin and (n, seed) == (SAMPLE_ROWS, SAMPLE_SEED):
        return cached[1]
    dataset = plugin.read_dataset(_generate(plugin, workdir, n, seed))
    if (n, seed) == (SAMPLE_ROWS, SAMPLE_SEED):
        _sample_cache[id(plugin)] = (plugin, dataset)
    return dataset


def _generate(plugin: Plugin, workdir: Path, n: int, seed: int) -> Path:
    path = plugin.make_sample_dataset(workdir, n=n, seed=seed)
    _require(Path(path).exists(), plugin, f"make_sample_dataset returned {path}, which does not exist")
    return Path(path)


def check_sample_dataset(plugin: Plugin, workdir: Path) -> None:
    """The generated set reads back cleanly, fits the schema and is deterministic by seed."""
    first = sample_dataset(plugin, workdir / "a", fresh=True)
    _require(len(first.samples) > 0, plugin, "the sample data set is empty")
    _require(not first.skipped, plugin, f"reading the sample data set skipped rows: {first.skipped[:3]}")
    declared = plugin.label_schema()
    if declared is not None:
        _require(first.label_schema == declared, plugin, "the sample data set's label schema differs from label_schema()")
    for sample in first.samples:
        _check_sample(plugin, sample, first.label_schema)
    second = _generate(plugin, workdir / "b", SAMPLE_ROWS, SAMPLE_SEED)
    if _file_tree(workdir / "a") != _file_tree(workdir / "b"):
        # Files may differ in bytes that carry no data (e.g. generated DICOM UIDs): compare what is read.
        same = _fingerprint(first) == _fingerprint(plugin.read_dataset(second))
        _require(same, plugin, "make_sample_dataset is not deterministic for a fixed seed")


def _file_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_sample(plugin: Plugin, sample: Sample, schema: LabelSchema) -> None:
    where = f"sample {sample.id!r}"
    present = [name for name in ["image", *plugin.input_schema().text_names] if sample.has(name)]
    _require(bool(present), plugin, f"{where} has neither an image nor any text")
    unknown = set(sample.labels) - set(schema.task_names)
    _require(not unknown, plugin, f"{where} has labels for undeclared tasks {sorted(unknown)}")
    for task in schema.tasks:
        _check_label(plugin, task, sample.labels.get(task.name), where)


def _check_label(plugin: Plugin, task: Task, value: object, where: str) -> None:
    if value is None:
        return
    rule = f"{where}: label {value!r} does not fit {task.kind} task {task.name!r}"
    if task.kind == "multiclass":
        _require(isinstance(value, str) and value in task.label_names, plugin, rule)
    elif task.kind == "multilabel":
        _require(isinstance(value, list) and set(value) <= set(task.label_names), plugin, rule)
    else:
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), plugin, rule)


def _fingerprint(dataset: Dataset) -> list[tuple]:
    return [
        (s.id, sorted(s.texts.items(), key=str), json.dumps(s.labels, sort_keys=True), None if s.image is None else s.image.tobytes())
        for s in dataset.samples
    ]


# -- preprocessing -----------------------------------------------------------------------
def check_prepare(plugin: Plugin, workdir: Path) -> None:
    """sanitize() then prepare() turn a sample's raw inputs back into a Sample; no inputs
    at all is an InputError."""
    dataset = sample_dataset(plugin, workdir)
    raw = plugin.sanitize(_raw_inputs(plugin, dataset))
    _require(isinstance(raw, RawInput), plugin, f"sanitize() returned {type(raw).__name__}, not a RawInput")
    sample = plugin.prepare(raw)
    _require(isinstance(sample, Sample), plugin, f"prepare() returned {type(sample).__name__}, not a Sample")
    if raw.image_bytes is not None:
        _require(sample.image is not None, plugin, "prepare() dropped the image it was given")
    _require(set(sample.texts) <= set(plugin.input_schema().text_names), plugin, "prepare() produced undeclared text inputs")
    try:
        plugin.prepare(RawInput())
    except InputError:
        return
    raise ConformanceError(plugin, "prepare() of an input with no image and no text must raise InputError")


def _raw_inputs(plugin: Plugin, dataset: Dataset) -> RawInput:
    with_image = next((s for s in dataset.samples if s.image is not None), None)
    with_text = next((s for s in dataset.samples if any(s.has(n) for n in s.texts)), dataset.samples[0])
    accepted = plugin.input_schema().image.media_types if plugin.input_schema().image else ()
    image_bytes, media_type = None, None
    for media_type_option, pil_format in (("image/png", "PNG"), ("image/jpeg", "JPEG")):
        if with_image is not None and media_type_option in accepted:
            buffer = io.BytesIO()
            with_image.image.convert("RGB").save(buffer, format=pil_format)
            image_bytes, media_type = buffer.getvalue(), media_type_option
            break
    return RawInput(image_bytes=image_bytes, media_type=media_type, texts=dict(with_text.texts))


# -- decisions ---------------------------------------------------------------------------
def synthetic_prediction(schema: LabelSchema, inputs: InputSchema, *, confident: bool) -> Prediction:
    """A Prediction shaped like the engine's for `schema`: sure of its first label, or
    evenly unsure across all labels."""
    heads = {task.name: _synthetic_head(task, confident) for task in schema.tasks}
    modalities = ["image", *inputs.text_names] if inputs.image else list(inputs.text_names)
    share = 1.0 / len(modalities)
    return Prediction(
        heads=heads,
        contributions={name: share for name in modalities},
        inputs_present=modalities,
        model_version="conformance",
    )


def _synthetic_head(task: Task, confident: bool) -> HeadPrediction:
    names = task.label_names
    if task.kind == "regression":
        return HeadPrediction(task=task.name, kind="regression", value=1.0 if confident else 0.0)
    if task.kind == "multilabel":
        probs = {name: (0.95 if i == 0 else 0.05) if confident else 0.5 for i, name in enumerate(names)}
        chosen = [names[0]] if confident else []
        return HeadPrediction(task=task.name, kind="multilabel", probabilities=probs, labels=chosen)
    rest = 0.03 / (len(names) - 1)
    probs = {name: (0.97 if i == 0 else rest) if confident else 1.0 / len(names) for i, name in enumerate(names)}
    top = max(probs, key=probs.get)
    return HeadPrediction(task=task.name, kind="multiclass", probabilities=probs, label=top, confidence=probs[top])


def check_decide(plugin: Plugin, workdir: Path) -> None:
    """decide() returns JSON with a boolean needs_review (and a reason when true); an evenly
    unsure multiclass prediction must be sent to review."""
    schema = plugin.label_schema() or sample_dataset(plugin, workdir).label_schema
    decisions = []
    for confident in (True, False):
        decision = plugin.decide(synthetic_prediction(schema, plugin.input_schema(), confident=confident))
        decisions.append(decision)
        _require(isinstance(decision, dict), plugin, "decide() must return a dict")
        _require(_is_json(decision), plugin, "decide() must return plain JSON")
        _require(isinstance(decision.get("needs_review"), bool), plugin, "decide() must set needs_review to a bool")
        if decision["needs_review"]:
            reason = decision.get("review_reason")
            _require(isinstance(reason, str) and bool(reason.strip()), plugin, "needs_review needs a review_reason")
        elif not confident and any(task.kind == "multiclass" for task in schema.tasks):
            raise ConformanceError(plugin, "an evenly unsure multiclass prediction must set needs_review")
    _check_declared_decision(plugin, decisions)


def _check_declared_decision(plugin: Plugin, decisions: list[dict]) -> None:
    """What decide() returns is exactly what decision_model() declares (the API publishes
    that model, so a generated client parses it)."""
    from pydantic import ValidationError

    model = plugin.decision_model()
    if model is None:
        return
    for decision in decisions:
        try:
            model.model_validate(decision)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors()[:5])
            raise ConformanceError(plugin, f"decide() does not match decision_model() {model.__name__}: {problems}") from None


# -- imports -----------------------------------------------------------------------------
_IMPORT_PROBE = """
import importlib, sys
target = importlib.import_module(sys.argv[1])
for part in sys.argv[2].split("."):
    target = getattr(target, part)
plugin = target()
plugin.label_schema(); plugin.input_schema(); plugin.describe()
loaded = sorted(name for name in ("torch", "torchvision", "timm", "transformers") if name in sys.modules)
print(",".join(loaded))
"""


def check_torch_free_import(plugin: Plugin, workdir: Path) -> None:
    """Importing the plugin and reading its declarations loads no deep-learning library
    (the API serves schemas and calls decide() without the engine)."""
    cls = type(plugin)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ConformanceError(plugin, "the plugin class must be importable from a module (not __main__ or a function)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, cls.__module__, cls.__qualname__],
        capture_output=True, text=True, env=env, timeout=120, cwd=workdir,
    )
    _require(result.returncode == 0, plugin, f"importing {cls.__module__} in a fresh interpreter failed:\n{result.stderr[-2000:]}")
    loaded = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    _require(not loaded, plugin, f"importing {cls.__module__} loads {loaded}; import heavy libraries inside methods")


INSTANCE_CHECKS: list[Check] = [
    check_validates,
    check_schemas_round_trip,
    check_sample_dataset,
    check_prepare,
    check_decide,
    check_torch_free_import,
]
CHECKS: list[Check] = [check_validates, check_registered, *INSTANCE_CHECKS[1:]]


def check_id(check: Check) -> str:
    """Readable pytest ids: `validates`, `sample_dataset`..."""
    return check.__name__.removeprefix("check_")


def run_conformance(plugin: Plugin, workdir: Path, checks: list[Check] | None = None) -> None:
    """Run every check in turn (each in its own sub-folder of workdir)."""
    for check in checks if checks is not None else CHECKS:
        folder = Path(workdir) / check_id(check)
        folder.mkdir(parents=True, exist_ok=True)
        check(plugin, folder)


def registered_plugin_names() -> list[str]:
    """Names to parametrize suite-wide conformance tests over."""
    return default_registry().names()
