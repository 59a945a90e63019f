"""Trained with 30% of images and 30% of texts missing, the model predicts from either
modality alone or both, and each is well above chance on the modality's own label."""

import pytest

from engine_helpers import COLOURS, EngineTestPlugin, dataset, fast_config, tiny_spec, xor_samples
from twinlens.engine.evaluation import evaluate_bundle
from twinlens.engine.predictor import Predictor
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.engine.training import train_model

# Two heads: colour is told by the image, animal by the text, so each input alone has
# something to say and the missing-modality paths can be scored separately.
SCHEMA = LabelSchema(tasks=(
    Task(name="colour", kind="multiclass", labels=tuple(Label(name=c) for c in COLOURS)),
    Task(name="animal", kind="multiclass", labels=(Label(name="cat"), Label(name="dog"))),
))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    train = dataset(xor_samples(400, seed=11, missing_image=0.3, missing_text=0.3), SCHEMA)
    missing_images = sum(s.image is None for s in train.samples) / len(train.samples)
    missing_texts = sum(s.texts["text"] is None for s in train.samples) / len(train.samples)
    assert 0.2 < missing_images < 0.4 and 0.12 < missing_texts < 0.3
    out = tmp_path_factory.mktemp("missing") / "bundle"
    train_model(EngineTestPlugin(), train, out_dir=out, spec=tiny_spec("gated"), config=fast_config(modality_dropout=0.2))
    return out


def _only(samples, keep):
    return [Sample(image=s.image if "image" in keep else None,
                   texts={"text": s.texts["text"] if "text" in keep else None}, labels=s.labels) for s in samples]


@pytest.mark.parametrize("keep,head", [(("image",), "colour"), (("text",), "animal"), (("image", "text"), "colour"), (("image", "text"), "animal")])
def test_each_modality_alone_or_both_is_well_above_chance(bundle, keep, head):
    test = dataset(xor_samples(150, seed=12), SCHEMA)
    report = evaluate_bundle(bundle, dataset(_only(test.samples, keep), SCHEMA))
    assert report["heads"][head]["accuracy"] >= 0.85


def test_predictor_handles_any_mix_of_missing_inputs(bundle):
    samples = _only(xor_samples(3, seed=13), ("image",)) + _only(xor_samples(3, seed=14), ("text",)) + xor_samples(3, seed=15)
    predictions = Predictor.from_bundle(bundle).predict(samples)
    assert [p.inputs_present for p in predictions] == [["image"]] * 3 + [["text"]] * 3 + [["image", "text"]] * 3
    for prediction in predictions:
        assert abs(sum(prediction.heads["colour"].probabilities.values()) - 1.0) < 1e-4
        assert abs(sum(prediction.contributions.values()) - 1.0) < 1e-3
