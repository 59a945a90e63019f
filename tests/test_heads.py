"""Multilabel and regression heads train and report their metrics; two heads on one model."""

import random

import pytest

from engine_helpers import EngineTestPlugin, fast_config, square_image, tiny_spec
from twinlens.engine.evaluation import evaluate_bundle
from twinlens.contract.plugin import Dataset
from twinlens.engine.predictor import Predictor
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.engine.training import train_model

TAGS = ["red", "blue", "urgent", "refund"]
SCHEMA = LabelSchema(tasks=(
    Task(name="tags", kind="multilabel", labels=tuple(Label(name=t) for t in TAGS)),
    Task(name="score", kind="regression"),
))


def _samples(n, seed):
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        colour = rng.choice(["red", "blue"])
        urgent, refund = rng.random() < 0.5, rng.random() < 0.5
        words = ["please help"] + (["urgent"] if urgent else []) + (["refund wanted"] if refund else [])
        tags = [colour] + (["urgent"] if urgent else []) + (["refund"] if refund else [])
        # score: 2 for urgent, +1 for red, plus a little noise
        score = 2.0 * urgent + 1.0 * (colour == "red") + rng.gauss(0, 0.05)
        samples.append(Sample(image=square_image(colour, rng), texts={"text": " ".join(words)}, labels={"tags": tags, "score": score}))
    return samples


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "bundle"
    train_model(EngineTestPlugin(), Dataset(_samples(400, 1), SCHEMA), val=Dataset(_samples(100, 2), SCHEMA), out_dir=out,
                spec=tiny_spec("concat"), config=fast_config(epochs=20, patience=6, monitor="mean.auroc"))
    return out


def test_two_heads_train_and_report_their_own_metrics(bundle):
    report = evaluate_bundle(bundle, Dataset(_samples(150, 3), SCHEMA))
    tags, score = report["heads"]["tags"], report["heads"]["score"]
    assert tags["auroc"] >= 0.95 and tags["macro_f1"] >= 0.85
    assert set(tags["auroc_per_class"]) == set(TAGS)
    assert 0 <= tags["ece"] <= 0.1
    assert score["r2"] >= 0.8 and score["mae"] < 0.5
    assert set(score) >= {"n", "mae", "rmse", "r2"}


def test_prediction_has_multilabel_labels_and_regression_value(bundle):
    predictions = Predictor.from_bundle(bundle).predict(_samples(20, 4))
    for prediction in predictions:
        assert set(prediction.heads["tags"].probabilities) == set(TAGS)
        assert prediction.heads["score"].value is not None
    truth = _samples(20, 4)
    hits = sum(("urgent" in p.heads["tags"].labels) == ("urgent" in t.labels["tags"]) for p, t in zip(predictions, truth))
    assert hits >= 18


def test_uncertain_labels_follow_the_policy():
    from twinlens.engine.data import encode_targets

    sample = Sample(labels={"tags": ["red"]}, meta={"uncertain": {"tags": ["urgent"]}})
    ignore = encode_targets([sample], SCHEMA, {"score": (0.0, 1.0)}, "ignore")
    positive = encode_targets([sample], SCHEMA, {"score": (0.0, 1.0)}, "positive")
    assert ignore.masks["tags"][0].tolist() == [True, True, False, True]
    assert positive.values["tags"][0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert not ignore.masks["score"][0]  # no regression label given: masked out of the loss
