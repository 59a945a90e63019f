"""Several images per case in the engine (docs/multi-image.md): the label shows only in the
second of two images; single-image bundles from before load and predict unchanged."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from engine_helpers import dataset, fast_config, square_image, tiny_spec, xor_samples
from twinlens.contract.errors import BundleError
from twinlens.contract.plugin import DatasetOptions
from twinlens.contract.sample import Sample
from twinlens.engine.bundle import load_bundle
from twinlens.engine.data import Preprocessor, assign_slots, collate
from twinlens.engine.evaluation import evaluate_bundle
from twinlens.engine.model import build_model
from twinlens.engine.onnx_export import ExportError, export_bundle
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import fit_image_slots, train_model
from twinlens.generic.plugin import GenericPlugin
from twinlens.generic.sample_data import make_second_image_dataset

FIXTURES = Path(__file__).parent / "fixtures"
# The module's four tiny trainings take a few minutes on a shared 2-core machine.
pytestmark = pytest.mark.timeout(1800)
OPTIONS = DatasetOptions(label_cols=["colour"])


@pytest.fixture(scope="module")
def second_image_data(tmp_path_factory):
    """Read through the generic plugin's manifest reader (an image column of lists)."""
    root = tmp_path_factory.mktemp("second")
    plugin = GenericPlugin()
    train = plugin.read_dataset(make_second_image_dataset(root / "train", 80, seed=1), OPTIONS)
    test = plugin.read_dataset(make_second_image_dataset(root / "test", 60, seed=2), OPTIONS, label_schema=train.label_schema)
    return train, test


@pytest.fixture(scope="module")
def bundles(second_image_data, tmp_path_factory):
    """Trained once per (fusion, image slots): two slots read both images, one slot the first."""
    train, _ = second_image_data
    root = tmp_path_factory.mktemp("bundles")
    trained = {}
    for fusion in ("concat", "cross_attention"):
        for slots in (2, 1):
            result = train_model(GenericPlugin(), train, out_dir=root / f"{fusion}-{slots}", spec=tiny_spec(fusion, max_images=slots),
                                 config=fast_config(epochs=6, batch_size=16, lr=5e-3))
            trained[fusion, slots] = result.bundle_dir
    return trained


def test_the_reader_keeps_every_image_of_a_row(second_image_data):
    train, _ = second_image_data
    assert all(len(sample.images) == 2 for sample in train.samples)
    assert train.samples[0].image is train.samples[0].images[0]


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
def test_the_second_image_decides(second_image_data, bundles, fusion):
    """Two slots read the evidence; the first-image-only model (one slot) is at chance."""
    _, test = second_image_data
    both, first_only = (evaluate_bundle(bundles[fusion, slots], test)["heads"]["colour"]["accuracy"] for slots in (2, 1))
    print(f"{fusion}: two images {both:.3f}, first image only {first_only:.3f}")
    assert both >= 0.9
    assert first_only <= 0.7


@pytest.mark.slow
def test_contributions_name_the_image_that_mattered(second_image_data, bundles):
    _, test = second_image_data
    predictions = Predictor.from_bundle(bundles["concat", 2], device="cpu").predict(test.samples[:20])
    shares = [p.image_contributions for p in predictions]
    assert all(set(row) == {"image 1", "image 2"} and abs(sum(row.values()) - 1) < 1e-3 for row in shares)
    assert sum(row["image 2"] > row["image 1"] for row in shares) >= 16


def test_one_image_in_a_two_slot_model_and_no_image_at_all():
    spec = tiny_spec("concat", max_images=2)
    model = build_model(spec, dataset(xor_samples(4, seed=0)).label_schema, seed=0, load_pretrained=False)
    pre = Preprocessor(spec, _tokenizer())
    rng = random.Random(0)
    samples = [Sample.of_images([square_image("red", rng), square_image("blue", rng)], texts={"text": "cat"}),
               Sample(image=square_image("red", rng), texts={"text": "cat"}), Sample(texts={"text": "cat"})]
    batch = collate([pre.encode(s) for s in samples], pre)
    assert batch["inputs"]["image"]["image_mask"].tolist() == [[True, True], [True, False], [False, False]]
    assert batch["present"]["image"].tolist() == [True, True, False]
    model.eval()
    with torch.no_grad():
        features = model.encode(batch)
        emptied = model.without_image(features, 1)
    assert emptied["image"].present.tolist() == [True, True, False]
    assert model.without_image(features, 0)["image"].present.tolist() == [True, False, False]
    # The second row has nothing in slot 1: emptying it changes nothing for that row.
    assert torch.allclose(model.heads_from(emptied)["xor"][1], model.heads_from(features)["xor"][1])


def test_views_take_their_slots_and_unnamed_images_fill_the_rest():
    assert assign_slots(["lateral", None], ["frontal", "lateral"], 2) == [1, 0]
    assert assign_slots([None, None, None], [], 2) == [0, 1, None]
    assert assign_slots(["oblique", "frontal"], ["frontal", "lateral"], 2) == [1, 0]


def test_slots_follow_the_data_up_to_the_plugin_maximum():
    single = [Sample(image=square_image("red", random.Random(0)))]
    assert fit_image_slots(tiny_spec(max_images=4), single).max_images == 1
    three = [Sample.of_images([square_image("red", random.Random(i)) for i in range(3)])]
    assert fit_image_slots(tiny_spec(max_images=4, image_views=["a", "b", "c", "d"]), three).image_views == ["a", "b", "c"]


def test_a_single_image_model_has_exactly_the_parameters_of_old():
    schema = dataset(xor_samples(4, seed=0)).label_schema
    one = build_model(tiny_spec(), schema, seed=0, load_pretrained=False)
    two = build_model(tiny_spec(max_images=2), schema, seed=0, load_pretrained=False)
    assert not any(name.startswith("image_") for name in one.state_dict() if "encoder" not in name)
    assert set(two.state_dict()) - set(one.state_dict()) == {"image_slots", "image_pool_score.weight", "image_pool_score.bias"}


def test_a_bundle_saved_before_several_images_loads_and_predicts_unchanged():
    """tests/fixtures/single_image_bundle was written by the code of before (see
    tests/fixtures/make_single_image_bundle.py); it must load strictly and answer the same."""
    bundle = FIXTURES / "single_image_bundle"
    load_bundle(bundle)  # strict: every weight fits, none is missing
    expected = json.loads((FIXTURES / "single_image_expected.json").read_text())
    predictions = Predictor.from_bundle(bundle, device="cpu").predict(xor_samples(8, seed=5, missing_image=0.25, missing_text=0.25))
    for want, got in zip(expected, predictions, strict=True):
        assert got.contributions == want["contributions"]
        assert got.image_contributions == {}
        for label, probability in want["xor"].items():
            assert got.heads["xor"].probabilities[label] == pytest.approx(probability, abs=1e-5)


@pytest.mark.slow
def test_onnx_export_refuses_a_multi_image_model_with_a_reason(tmp_path, bundles):
    with pytest.raises(ExportError, match="up to 2 images per case"):
        export_bundle(bundles["concat", 2], tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


def _tokenizer():
    from twinlens.engine.encoders import load_tokenizer

    return load_tokenizer(FIXTURES / "single_image_bundle" / "tokenizer")


def test_a_tampered_multi_image_spec_does_not_load(tmp_path):
    """A single-image bundle whose config is edited to claim two slots fails its checks."""
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(FIXTURES / "single_image_bundle", copy)
    config = json.loads((copy / "config.json").read_text())
    config["model_spec"]["max_images"] = 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError):
        load_bundle(copy)


@pytest.mark.slow
def test_each_image_gets_its_heatmap(second_image_data, bundles):
    from twinlens.engine.explain import Explainer

    _, test = second_image_data
    predictor = Predictor.from_bundle(bundles["concat", 2], device="cpu")
    encoded = predictor.preprocess(test.samples[0])
    prediction = predictor.predict_encoded([encoded])[0]
    explanation = Explainer(predictor).explain(encoded, prediction)
    head = explanation.heads["colour"]
    assert set(head.image_heatmaps) == {"image 1", "image 2"}
    most = max(prediction.image_contributions, key=prediction.image_contributions.get)
    assert head.heatmap is head.image_heatmaps[most]
    assert {"colour", "colour@image 1", "colour@image 2"} == set(explanation.heatmap_pngs())
    assert set(explanation.to_dict()["heads"]["colour"]["image_heatmaps"]) == {"image 1", "image 2"}


@pytest.mark.slow
def test_bulk_scoring_reads_a_list_of_images(tmp_path, second_image_data, bundles):
    from twinlens.engine.bulk import score_file

    data = make_second_image_dataset(tmp_path / "rows", 6, seed=9)
    out = tmp_path / "scored.jsonl"
    summary = score_file(GenericPlugin(), Predictor.from_bundle(bundles["concat", 2], device="cpu"), data, out)
    assert summary.scored == 6 and not summary.bad
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    truth = [json.loads(line)["colour"] for line in data.read_text().splitlines()]
    assert all(set(row["prediction"]["image_contributions"]) == {"image 1", "image 2"} for row in rows), rows[0]
    assert sum(row["prediction"]["heads"]["colour"]["label"] == colour for row, colour in zip(rows, truth)) >= 5


@pytest.mark.parametrize("fusion", ["concat", "weighted", "gated", "cross_attention", "early"])
@pytest.mark.parametrize("pool", ["attention", "mean"])
def test_every_fusion_reads_every_image(fusion, pool):
    """Changing only the second image changes the answer, for every strategy and pooling."""
    spec = tiny_spec(fusion, max_images=2, image_pool=pool)
    model = build_model(spec, dataset(xor_samples(4, seed=0)).label_schema, seed=0, load_pretrained=False).eval()
    pre = Preprocessor(spec, _tokenizer())
    rng = random.Random(1)
    first = square_image("red", rng)
    samples = [Sample.of_images([first, square_image(colour, random.Random(7))], texts={"text": "cat"}) for colour in ("red", "blue")]
    with torch.no_grad():
        logits = model(collate([pre.encode(s) for s in samples], pre))["xor"]
    assert logits.shape == (2, 2)
    assert not torch.allclose(logits[0], logits[1])
