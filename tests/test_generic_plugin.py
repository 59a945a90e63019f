"""The generic plugin: sample data set, prepare, decide and its review threshold."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import DatasetOptions, RawInput
from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens.contract.registry import get_plugin
from twinlens.generic import GenericPlugin
from twinlens.generic.plugin import REVIEW_THRESHOLD_ENV


def multiclass(probs: dict[str, float], task: str = "label") -> HeadPrediction:
    top = max(probs, key=probs.get)
    return HeadPrediction(task=task, kind="multiclass", probabilities=probs, label=top, confidence=probs[top])


def test_entry_point_gives_the_generic_plugin():
    plugin = get_plugin("generic")
    assert isinstance(plugin, GenericPlugin)
    assert plugin.label_schema() is None
    assert plugin.input_schema().text_names == ["text"]


def test_sample_dataset_is_deterministic_ascii_and_multi_task(tmp_path):
    plugin = GenericPlugin()
    first = plugin.make_sample_dataset(tmp_path / "a", n=40, seed=5)
    second = plugin.make_sample_dataset(tmp_path / "b", n=40, seed=5)
    other = plugin.make_sample_dataset(tmp_path / "c", n=40, seed=6)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    first.read_bytes().decode("ascii")
    images_a = sorted((tmp_path / "a" / "images").iterdir())
    images_b = sorted((tmp_path / "b" / "images").iterdir())
    assert [p.read_bytes() for p in images_a] == [p.read_bytes() for p in images_b]
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(rows) == 40
    assert all(row["image"] or row["text"] for row in rows)  # never both missing
    dataset = plugin.read_dataset(first, DatasetOptions(label_cols=["label", "tags", "area"]))
    kinds = {task.name: task.kind for task in dataset.label_schema.tasks}
    assert kinds == {"label": "multiclass", "tags": "multilabel", "area": "regression"}
    assert set(dataset.label_schema.task("label").label_names) <= {"circle_small", "circle_large", "square_small", "square_large"}


def test_sample_label_needs_both_modalities(tmp_path):
    """Shape is only in the picture and size only in the text."""
    plugin = GenericPlugin()
    manifest = plugin.make_sample_dataset(tmp_path, n=60, seed=0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        shape, size = row["label"].split("_")
        assert shape not in row["text"]
        if size in row["text"]:
            assert ("small" in row["text"]) != ("large" in row["text"])
    sized = sum(1 for row in rows if row["label"].split("_")[1] in row["text"])
    assert 0.6 * len(rows) < sized < len(rows)  # mostly said, sometimes not


def test_prepare_decodes_an_image_and_cleans_text():
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(buffer, format="PNG")
    sample = GenericPlugin().prepare(RawInput(image_bytes=buffer.getvalue(), texts={"text": "  a \n b "}))
    assert sample.image.size == (20, 10)
    assert sample.texts == {"text": "a b"}
    with pytest.raises(InputError):
        GenericPlugin().prepare(RawInput(texts={"text": "   "}))


def test_decide_confident_prediction():
    prediction = Prediction(heads={
        "label": multiclass({"cat": 0.9, "dog": 0.1}),
        "tags": HeadPrediction(task="tags", kind="multilabel", probabilities={"x": 0.8, "y": 0.2}, labels=["x"]),
        "score": HeadPrediction(task="score", kind="regression", value=2.5),
    })
    decision = GenericPlugin().decide(prediction)
    assert decision["needs_review"] is False and decision["review_reason"] is None
    assert decision["heads"]["label"]["label"] == "cat"
    assert decision["heads"]["label"]["confidence"] == 0.9
    assert decision["heads"]["label"]["top"][0] == {"label": "cat", "probability": 0.9}
    assert decision["heads"]["tags"]["labels"] == ["x"]
    assert decision["heads"]["score"] == {"kind": "regression", "value": 2.5}
    json.dumps(decision)


def test_decide_flags_low_confidence_with_a_reason():
    prediction = Prediction(heads={"label": multiclass({"cat": 0.55, "dog": 0.45}), "kind": multiclass({"a": 0.95, "b": 0.05}, "kind")})
    decision = GenericPlugin().decide(prediction)
    assert decision["needs_review"] is True
    assert decision["review_reason"] == "label: top confidence 0.55 is below 0.60"


def test_review_threshold_is_configurable(monkeypatch):
    prediction = Prediction(heads={"label": multiclass({"cat": 0.7, "dog": 0.3})})
    assert GenericPlugin().decide(prediction)["needs_review"] is False
    assert GenericPlugin(review_threshold=0.8).decide(prediction)["needs_review"] is True
    monkeypatch.setenv(REVIEW_THRESHOLD_ENV, "0.75")
    assert GenericPlugin().decide(prediction)["needs_review"] is True
    monkeypatch.setenv(REVIEW_THRESHOLD_ENV, "lots")
    with pytest.raises(ValueError, match=REVIEW_THRESHOLD_ENV):
        GenericPlugin()
    with pytest.raises(ValueError):
        GenericPlugin(review_threshold=1.5)


def test_zero_shot_predictions_go_to_review():
    prediction = Prediction(heads={"label": multiclass({"cat": 0.99, "dog": 0.01})}, zero_shot=True)
    decision = GenericPlugin().decide(prediction)
    assert decision["needs_review"] is True and "zero-shot" in decision["review_reason"]
