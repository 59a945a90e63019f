"""The automatic recipe: minority classes on a small imbalanced image set, ensemble
bundles that load through the one Predictor, refuse pickle and tampering, and keep their
baselines for comparison."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine_helpers import TINY_IMAGE, TINY_TEXT, xor_samples
from twinlens.contract.errors import BundleError
from twinlens.contract.plugin import Dataset
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.contract.spec import ModelSpec, TrainConfig

SHAPES = ("plain", "scratch", "spots")
SHAPE_SCHEMA = LabelSchema(tasks=(Task(name="defect", kind="multiclass", labels=tuple(Label(name=s) for s in SHAPES)),))


def _surface(kind: str, rng: random.Random) -> Image.Image:
    """A noisy grey surface; a scratch is one thin dark line, spots a few dark dots."""
    base = np.random.default_rng(rng.randrange(1 << 30)).normal(150, 18, (64, 64)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(base).convert("RGB")
    draw = ImageDraw.Draw(image)
    if kind == "scratch":
        x0, y0 = rng.randrange(0, 20), rng.randrange(0, 64)
        draw.line((x0, y0, x0 + rng.randrange(30, 44), rng.randrange(0, 64)), fill=(70, 70, 70), width=2)
    elif kind == "spots":
        for _ in range(rng.randrange(3, 6)):
            x, y, r = rng.randrange(4, 60), rng.randrange(4, 60), rng.randrange(2, 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(60, 60, 60))
    return image


def imbalanced_images(n: int, seed: int) -> Dataset:
    """80% plain, 10% scratch, 10% spots."""
    rng = random.Random(seed)
    kinds = ["plain"] * int(n * 0.8) + ["scratch"] * int(n * 0.1) + ["spots"] * (n - int(n * 0.8) - int(n * 0.1))
    rng.shuffle(kinds)
    return Dataset([Sample(image=_surface(k, rng), labels={"defect": k}, id=str(i)) for i, k in enumerate(kinds)], SHAPE_SCHEMA)


class _ImagePlugin:
    name, version = "test-images", "0"

    def default_model_spec(self) -> ModelSpec:
        return ModelSpec(image_encoder=TINY_IMAGE.model_copy(update={"image_size": 64}), text_encoder=TINY_TEXT, hidden_dim=32,
                         modalities=["image"])

    def training_defaults(self) -> TrainConfig:
        return TrainConfig(progress=False)


def _macro_f1(predictor, dataset: Dataset, task: str) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    truth = [s.labels[task] for s in dataset.samples]
    guess = [p.heads[task].label for p in predictor.predict(dataset.samples, contributions=False)]
    majority = max(set(truth), key=truth.count)
    return f1_score(truth, guess, average="macro"), f1_score(truth, [majority] * len(truth), average="macro")


@pytest.mark.slow
def test_default_recipe_predicts_minority_classes(tmp_path):
    from twinlens.engine.predictor import Predictor
    from twinlens.engine.recipe import RecipeOptions, train_auto

    train, test = imbalanced_images(240, seed=0), imbalanced_images(200, seed=1)
    result = train_auto(_ImagePlugin(), train, out_dir=tmp_path / "model", options=RecipeOptions(time_limit=60, progress=False))
    macro_f1, majority_f1 = _macro_f1(Predictor.from_bundle(tmp_path / "model"), test, "defect")
    print(f"held-out macro-F1 {macro_f1:.3f} (majority class: {majority_f1:.3f}); ships {result.metrics['shipped']}")
    assert set(result.metrics["candidates"]) >= {"image-features", "network"}
    assert macro_f1 >= majority_f1 + 0.4


XOR_SCHEMA = LabelSchema(tasks=(Task(name="xor", kind="multiclass", labels=(Label(name="same"), Label(name="different"))),))


def _xor(n: int, seed: int) -> Dataset:
    samples = xor_samples(n, seed)
    for sample in samples:
        sample.labels = {"xor": sample.labels["xor"]}
    return Dataset(samples, XOR_SCHEMA)


class _XorPlugin(_ImagePlugin):
    name = "test-xor"

    def default_model_spec(self) -> ModelSpec:
        return ModelSpec(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT, hidden_dim=32)

    def training_defaults(self) -> TrainConfig:
        # XOR takes a few dozen epochs of the tiny network (the recipe keeps this cap).
        return TrainConfig(progress=False, epochs=40, patience=10, lr=3e-3)


@pytest.fixture(scope="module")
def ensemble_bundle(tmp_path_factory) -> tuple[Path, dict]:
    from twinlens.engine.recipe import RecipeOptions, train_auto

    out = tmp_path_factory.mktemp("ensemble") / "model"
    result = train_auto(_XorPlugin(), _xor(240, 0), out_dir=out, options=RecipeOptions(time_limit=120, progress=False))  # the epoch cap ends it sooner; time only guards a loaded machine
    return out, result.metrics


def test_ensemble_bundle_keeps_every_candidate_and_loads_through_predictor(ensemble_bundle):
    from twinlens.contract.bundle_files import read_bundle_config
    from twinlens.engine.predictor import Predictor

    bundle, metrics = ensemble_bundle
    config = read_bundle_config(bundle)  # verifies digests, content hash and no pickle
    names = {m["name"] for m in config["members"]}
    assert {"tfidf-text", "image-features", "linear-all", "network"} <= names
    assert abs(sum(m["weight"] for m in config["members"]) - 1.0) < 1e-6
    assert (bundle / "linear.safetensors").is_file() and (bundle / "network" / "config.json").is_file()
    assert all(p.suffix in (".json", ".safetensors", ".txt", ".model") for p in bundle.rglob("*") if p.is_file())
    predictor = Predictor.from_bundle(bundle)
    test = _xor(80, 7)
    predictions = predictor.predict(test.samples)
    assert {p.model_version for p in predictions} == {config["version"]}
    assert all(set(p.contributions) == {"image", "text"} and abs(sum(p.contributions.values()) - 1) < 1e-3 for p in predictions)
    accuracy = np.mean([p.heads["xor"].label == s.labels["xor"] for p, s in zip(predictions, test.samples)])
    # XOR needs both inputs: only the fused network can solve it, so it must be shipped.
    assert accuracy >= 0.9, metrics["shipped_reason"]
    assert "weighed_on_rows" not in metrics["candidates"]["network"]["notes"]  # no groups: stopped and weighed on all of validation
    only_text = predictor.predict([Sample(texts={"text": "a cat"})])[0]
    assert only_text.inputs_present == ["text"] and only_text.contributions == {"text": 1.0}


def test_ensemble_bundle_refuses_tampering_and_pickle(ensemble_bundle, tmp_path):
    import shutil

    from twinlens.engine.predictor import Predictor

    bundle, _ = ensemble_bundle
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    vocabulary = next((copy / "linear").glob("*.json"))
    data = json.loads(vocabulary.read_text())
    vocabulary.write_text(json.dumps({**data, "extra": 1}))
    with pytest.raises(BundleError, match="fails its hash"):
        Predictor.from_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(bundle, copy)
    (copy / "network" / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(BundleError, match="pickle"):
        Predictor.from_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(bundle, copy)
    nested = json.loads((copy / "network" / "config.json").read_text())
    (copy / "network" / "config.json").write_text(json.dumps({**nested, "temperatures": {"xor": 0.01}}))
    with pytest.raises(BundleError, match="fails its hash"):
        Predictor.from_bundle(copy)


def test_evaluate_reports_every_member_on_new_data(ensemble_bundle):
    from twinlens.engine.evaluation import evaluate_bundle

    bundle, _ = ensemble_bundle
    report = evaluate_bundle(bundle, _xor(60, 9))
    assert {"tfidf-text", "image-features", "linear-all", "network", "network, image alone", "network, text alone"} <= set(report["members"])
    linear = report["members"]["linear-all"]["report"]["heads"]["xor"]["accuracy"]
    assert report["heads"]["xor"]["accuracy"] > linear + 0.2  # linear models cannot do XOR


def _grouped_texts(n_groups: int = 12, per_group: int = 10) -> Dataset:
    schema = LabelSchema(tasks=(Task(name="kind", kind="multiclass", labels=(Label(name="a"), Label(name="b"))),))
    rng, samples = random.Random(0), []
    for g in range(n_groups):
        for i in range(per_group):
            label = "a" if (g + i) % 2 else "b"
            said = label if rng.random() < 0.75 else {"a": "b", "b": "a"}[label]  # the text is right 3 times in 4
            samples.append(Sample(texts={"text": f"{said}word{said} filler{g}"}, labels={"kind": label}, id=f"{g}-{i}",
                                  meta={"group": f"g{g}"}))
    return Dataset(samples, schema)


def _run_rows(dataset: Dataset):
    from twinlens.engine.recipe import CaseView, RunRows, validation_split

    fit, val = validation_split(dataset, 0.25, seed=0)
    schema = dataset.label_schema
    return RunRows(schema, CaseView(fit, schema, ["text"], False, {}), CaseView(val, schema, ["text"], False, {}))


def test_cross_fit_folds_hold_out_every_row_once_and_keep_groups_whole():
    from twinlens.engine.recipe import CROSS_FIT_FOLDS, cross_fit_folds

    rows = _run_rows(_grouped_texts())
    folds = cross_fit_folds(rows, seed=0)
    assert len(folds) == CROSS_FIT_FOLDS
    assert np.array_equal(folds[0].test, rows.val)  # the validation split is the first fold
    held_out = np.concatenate([f.test for f in folds])
    assert sorted(held_out) == list(range(len(rows)))  # every row held out exactly once
    group_of = np.array([s.meta["group"] for s in rows.view.samples])
    for fold in folds:
        assert not set(group_of[fold.test]) & set(group_of[fold.train])  # no group on both sides
        assert len(np.intersect1d(fold.train, fold.test)) == 0


def test_selection_weighs_the_network_only_where_it_has_held_out_outputs():
    """A member scored on the validation rows only (the network) neither answers nor counts
    on the other rows; the mixture stays defined there and the ensemble starts from a
    member that covers every row."""
    from twinlens.engine.ensemble import ZeroShotMember
    from twinlens.engine.recipe import SelectionRows, _ensemble_option, _select, cross_fit_folds, fit_linear

    rows = _run_rows(_grouped_texts())
    folds = cross_fit_folds(rows, seed=0)
    words = fit_linear("tfidf-words-text", ["text"], False, rows, folds, ("words",))
    assert words.covers.all() and words.notes["folds"] == len(folds)
    # A stand-in for the network: perfect on validation rows, never scored elsewhere.
    perfect = {"kind": np.eye(2, dtype=np.float32)[rows.view.targets["kind"].astype(int)] * 0.98 + 0.01}
    partial = rows.candidate("network", ZeroShotMember("stand-in", rows.schema, ["text"]), rows.spread({"kind": perfect["kind"][rows.val]}, rows.val),
                             rows.covering(rows.val), 0.0)
    where = SelectionRows.of([words, partial], rows.view)
    assert where.starters == [0]
    assert not where.sees[np.setdiff1d(np.arange(len(rows)), rows.val), 1].any()
    ensemble = _ensemble_option(rows, [words, partial], seed=0)
    for task_report in (ensemble.report, ensemble.selection_report):
        assert np.isfinite(task_report["mean"]["score"])
    # Perfect where it answers, so it earns weight; the start member answers the rest.
    assert [c.name for c in ensemble.members] == ["tfidf-words-text", "network"]
    assert ensemble.covers.all()
    assert ensemble.report["mean"]["score"] >= words.report["mean"]["score"]
    # What ships answers every row: the mixture, or the network alone only if it leads it
    # by more than the noise (on 30 validation rows it does not).
    shipped = _select(rows, [words, partial], seed=0)
    assert shipped.name == "ensemble", shipped.reason


def test_a_lead_within_the_noise_across_groups_does_not_ship_a_candidate_alone():
    """A network that agrees with the word baseline except on three validation rows (two it
    gets right, one it gets wrong) leads by less than the noise on a few groups: it does not
    ship alone, the ensemble that hedges it does. Make the lead broad (right on every
    row the words get wrong) and what ships is the network, or a mixture it dominates."""
    from twinlens.engine.ensemble import ZeroShotMember
    from twinlens.engine.recipe import _select, cross_fit_folds, fit_linear, lead_noise

    rows = _run_rows(_grouped_texts(per_group=40))
    words = fit_linear("tfidf-words-text", ["text"], False, rows, cross_fit_folds(rows, seed=0), ("words",))
    truth = rows.view.targets["kind"].astype(int)
    wrong = np.flatnonzero(words.outputs["kind"][rows.val].argmax(1) != truth[rows.val])
    assert len(wrong) >= 4, "the words must leave some validation rows wrong for this test to mean anything"
    right = np.setdiff1d(np.arange(len(rows.val)), wrong)

    def network_fixing(count: int, breaking: int = 0):
        outputs = words.outputs["kind"][rows.val].copy()
        for row in wrong[:count]:
            outputs[row] = np.eye(2, dtype=np.float32)[truth[rows.val][row]] * 0.9 + 0.05
        for row in right[-breaking:] if breaking else []:
            outputs[row] = np.eye(2, dtype=np.float32)[1 - truth[rows.val][row]] * 0.9 + 0.05
        return rows.candidate("network", ZeroShotMember("stand-in", rows.schema, ["text"]),
                              rows.spread({"kind": outputs}, rows.val), rows.covering(rows.val), 0.0)

    narrow = network_fixing(2, breaking=1)  # a net lead of one row, won and lost on different rows
    assert narrow.score > words.score
    noise = lead_noise(rows.schema, narrow.outputs, words.outputs, rows.view, rows.val, seed=0)
    assert narrow.score - words.score < noise
    shipped = _select(rows, [words, narrow], seed=0)
    assert shipped.name == "ensemble", shipped.reason
    assert [c.name for c in shipped.members] == ["tfidf-words-text", "network"]

    broad = _select(rows, [words, network_fixing(len(wrong))], seed=0)
    weight = dict(zip([c.name for c in broad.members], broad.weights)).get("network", 0.0)
    assert weight >= 0.75, broad.reason  # the network alone, or a mixture it dominates


def test_a_regression_head_mixes_linear_and_network_members():
    """Linear heads score (rows, 1), the network's regression head (rows,): the mixture
    needs both as one value per row (a regression task in an ensemble used to fail here)."""
    from twinlens.engine.ensemble import calibrate, mix

    task = Task(name="area", kind="regression")
    schema = LabelSchema(tasks=(task,))
    linear = {"area": calibrate(task, np.array([[1.0], [3.0]], dtype=np.float32), 1.0)}
    network = {"area": np.array([3.0, 5.0], dtype=np.float32)}
    mixed = mix(schema, [linear, network], np.array([0.5, 0.5]), np.ones((2, 2), dtype=bool))
    assert mixed["area"].shape == (2,) and np.allclose(mixed["area"], [2.0, 4.0])


def test_on_grouped_data_the_network_stops_on_some_validation_groups_and_is_weighed_on_the_others():
    """Whole groups on one side only; the weighed side holds more groups; every row on one side."""
    from twinlens.engine.recipe import MIN_GROUPS_TO_WEIGH, stopping_split

    val = _grouped_texts(n_groups=24, per_group=20)
    stop, judge = stopping_split(val, seed=0)
    assert judge is not None
    group_of = np.array([s.meta["group"] for s in val.samples])
    assert sorted(np.concatenate([stop, judge])) == list(range(len(val.samples)))
    assert not set(group_of[stop]) & set(group_of[judge])
    assert len(set(group_of[judge])) >= max(MIN_GROUPS_TO_WEIGH, len(set(group_of[stop])))
    assert abs(len(stop) - len(judge)) <= 0.25 * len(val.samples)


def test_without_groups_or_with_few_rows_the_network_stops_and_is_weighed_on_every_validation_row():
    from twinlens.engine.recipe import MIN_ROWS_PER_HALF, stopping_split

    ungrouped = _grouped_texts(n_groups=24, per_group=20)
    for sample in ungrouped.samples:
        sample.meta = {}
    few = _grouped_texts(n_groups=24, per_group=(2 * MIN_ROWS_PER_HALF - 1) // 24)
    for dataset in (ungrouped, few):
        stop, judge = stopping_split(dataset, seed=0)
        assert judge is None and list(stop) == list(range(len(dataset.samples)))


def test_a_grouped_run_weighs_the_network_on_validation_groups_it_did_not_stop_on(tmp_path):
    """Through the whole recipe: the network's candidate covers only the weighed half of the
    validation rows, and XOR (which only the network can learn) still ships."""
    from twinlens.engine.predictor import Predictor
    from twinlens.engine.recipe import RecipeOptions, train_auto

    train = _xor(960, 3)
    for i, sample in enumerate(train.samples):
        sample.meta = {"group": f"g{i % 32}"}
    result = train_auto(_XorPlugin(), train, out_dir=tmp_path / "model", options=RecipeOptions(time_limit=120, progress=False))
    from twinlens.contract.bundle_files import read_bundle_config

    network = result.metrics["candidates"]["network"]
    notes, validation_rows = network["notes"], read_bundle_config(tmp_path / "model")["data"]["validation"]
    assert notes["stopped_on_rows"] > 0 and notes["weighed_on_rows"] > 0, notes
    assert notes["stopped_on_rows"] + notes["weighed_on_rows"] == validation_rows
    assert network["selection_rows"] == notes["weighed_on_rows"]  # selection trusts only the rows it did not stop on
    test = _xor(120, 11)
    predictions = Predictor.from_bundle(tmp_path / "model").predict(test.samples, contributions=False)
    accuracy = np.mean([p.heads["xor"].label == s.labels["xor"] for p, s in zip(predictions, test.samples)])
    assert accuracy >= 0.9, result.metrics["shipped_reason"]
