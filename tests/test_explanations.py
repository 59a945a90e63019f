"""Explanations are faithful on data where the evidence is known: a coloured square decides
the colour head and one word decides the animal head. The heatmap's hottest cell sits on
the square, masking the hottest image region (or the top-weighted word) moves the
predicted probability more than masking random ones; ViT-style encoders, the lexical
branch, the ONNX runtime and linear TF-IDF ensembles are explained too."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from engine_helpers import COLOURS, EngineTestPlugin, dataset, fast_config, tiny_spec
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.contract.spec import ImageEncoderSpec
from twinlens.engine.explain import Explainer, hashed_bucket, ngram_occurrences
from twinlens.engine.lexical import hashed_ngrams
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model

SCHEMA = LabelSchema(tasks=(
    Task(name="colour", kind="multiclass", labels=(Label(name="red"), Label(name="blue"))),
    Task(name="animal", kind="multiclass", labels=(Label(name="cat"), Label(name="dog"))),
))
FILLERS = ["the", "note", "says", "customer", "wrote", "about", "a", "today", "ticket", "here", "again", "please"]
SIZE = 32
SQUARE = 12
# output_stride 8: a 4x4 last feature map at 32 px (the default stride 32 leaves one cell).
# The lexical branch learns the animal word in a few epochs (the tiny random text encoder
# alone needs many more); word weights add both branches' attributions.
CNN_SPEC = tiny_spec(lexical_buckets=512).model_copy(update={"image_encoder": ImageEncoderSpec(
    name="test_resnet", image_size=SIZE, kwargs={"output_stride": 8})})


def evidence_samples(n: int, seed: int) -> list[Sample]:
    """A 12 px square of the label's colour on noise; the animal word among five fillers."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        colour, animal = rng.choice(list(COLOURS)), rng.choice(["cat", "dog"])
        noise = np.random.default_rng(rng.randrange(1 << 30)).integers(90, 160, (SIZE, SIZE, 3), dtype=np.uint8)
        image = Image.fromarray(noise)
        x, y = rng.randrange(0, SIZE - SQUARE), rng.randrange(0, SIZE - SQUARE)
        image.paste(Image.new("RGB", (SQUARE, SQUARE), COLOURS[colour]), (x, y))
        words = rng.sample(FILLERS, 5)
        words.insert(rng.randrange(0, 6), animal)
        samples.append(Sample(image=image, texts={"text": " ".join(words)}, labels={"colour": colour, "animal": animal},
                              id=str(i), meta={"square": (x, y)}))
    return samples


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    train_model(EngineTestPlugin(), dataset(evidence_samples(128, 1), SCHEMA), out_dir=root / "cnn",
                spec=CNN_SPEC, config=fast_config(epochs=6))
    return root


def _probability(predictor: Predictor, sample: Sample, head: str, label: str) -> float:
    return predictor.predict([sample], contributions=False)[0].heads[head].probabilities[label]


def _mask_cells(image: Image.Image, cells: list[int], side: int) -> Image.Image:
    pixels = np.asarray(image).copy()
    step = SIZE / side
    for cell in cells:
        row, col = divmod(cell, side)
        pixels[int(row * step):int((row + 1) * step), int(col * step):int((col + 1) * step)] = 125
    return Image.fromarray(pixels)


def test_heatmaps_sit_on_the_square_and_masking_them_matters_more_than_random(trained):
    predictor = Predictor.from_bundle(trained / "cnn", device="cpu")
    explainer = Explainer(predictor, ig_steps=8)
    rng = random.Random(5)
    on_square, top_drops, random_drops = 0, [], []
    samples = evidence_samples(8, 99)
    for sample in samples:
        prediction = predictor.predict([sample], contributions=False)[0]
        explanation = explainer.explain(predictor.preprocess(sample), prediction)
        grid = explanation.heads["colour"].heatmap.grid
        side = grid.shape[0]
        assert grid.dtype == np.uint8 and grid.max() == 255
        x, y = sample.meta["square"]
        row, col = divmod(int(grid.argmax()), side)
        centre = ((col + 0.5) * SIZE / side, (row + 0.5) * SIZE / side)
        step = SIZE / side
        on_square += (x - step <= centre[0] <= x + SQUARE + step) and (y - step <= centre[1] <= y + SQUARE + step)
        label = prediction.heads["colour"].label
        before = prediction.heads["colour"].probabilities[label]
        count = max(1, (side * side) // 4)
        top = list(np.argsort(grid.reshape(-1))[::-1][:count])
        chosen = rng.sample(range(side * side), count)
        top_drops.append(before - _probability(predictor, _with_image(sample, _mask_cells(sample.image, top, side)), "colour", label))
        random_drops.append(before - _probability(predictor, _with_image(sample, _mask_cells(sample.image, chosen, side)), "colour", label))
    print(f"\nheatmap peak on the square: {on_square}/{len(samples)}; mean drop masking top quarter "
          f"{np.mean(top_drops):.3f} vs random {np.mean(random_drops):.3f}")
    assert on_square >= 0.75 * len(samples)
    assert np.mean(top_drops) > np.mean(random_drops) + 0.05


def _with_image(sample: Sample, image: Image.Image) -> Sample:
    return Sample(image=image, texts=dict(sample.texts), meta=dict(sample.meta))


def _with_text(sample: Sample, text: str) -> Sample:
    return Sample(image=sample.image, texts={"text": text}, meta=dict(sample.meta))


def test_the_label_word_weighs_most_and_masking_it_matters_more_than_random(trained):
    predictor = Predictor.from_bundle(trained / "cnn", device="cpu")
    explainer = Explainer(predictor, ig_steps=8)
    rng = random.Random(6)
    top_is_label, top_drops, random_drops = 0, [], []
    samples = evidence_samples(8, 98)
    for sample in samples:
        prediction = predictor.predict([sample], contributions=False)[0]
        explanation = explainer.explain(predictor.preprocess(sample), prediction)
        spans = explanation.heads["animal"].words["text"]
        assert " ".join(span.text for span in spans) == sample.texts["text"]  # the words the user wrote
        top = max(range(len(spans)), key=lambda i: spans[i].weight)
        top_is_label += spans[top].text == sample.labels["animal"]
        label = prediction.heads["animal"].label
        before = prediction.heads["animal"].probabilities[label]
        other = rng.choice([i for i in range(len(spans))])
        for index, drops in ((top, top_drops), (other, random_drops)):
            kept = " ".join(span.text for i, span in enumerate(spans) if i != index)
            drops.append(before - _probability(predictor, _with_text(sample, kept), "animal", label))
    print(f"\nlabel word weighs most: {top_is_label}/{len(samples)}; mean drop removing the top word "
          f"{np.mean(top_drops):.3f} vs a random word {np.mean(random_drops):.3f}")
    assert top_is_label >= 0.75 * len(samples)
    assert np.mean(top_drops) > np.mean(random_drops) + 0.05


def test_a_vit_encoder_gets_a_patch_heatmap_and_the_lexical_branch_weighs_words(tmp_path):
    spec = tiny_spec(lexical_buckets=256).model_copy(update={"image_encoder": ImageEncoderSpec(
        name="vit_tiny_patch16_224", image_size=32, pretrained=False,
        kwargs={"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2})})
    train_model(EngineTestPlugin(), dataset(evidence_samples(60, 2), SCHEMA), out_dir=tmp_path / "vit", spec=spec,
                config=fast_config(epochs=2))
    predictor = Predictor.from_bundle(tmp_path / "vit", device="cpu")
    sample = evidence_samples(1, 50)[0]
    explanation = Explainer(predictor).explain(predictor.preprocess(sample), predictor.predict([sample])[0])
    heatmap = explanation.heads["colour"].heatmap
    assert heatmap.grid.shape == (4, 4) and heatmap.method == "grad-cam on patch tokens"
    assert explanation.text_method == "integrated gradients + lexical gradient x input"
    assert len(explanation.heads["animal"].words["text"]) == 6
    assert heatmap.png().startswith(b"\x89PNG")


def test_word_ngrams_hash_into_the_buckets_the_lexical_branch_uses():
    text = "Error E-4471 on the screen, error again"
    words = [(w, 0, 0) for w in text.split()]
    derived = {hashed_bucket(gram, 512) for _, gram, _ in ngram_occurrences(words)}
    assert derived == set(hashed_ngrams(text, 512)[0].tolist())


def test_an_onnx_served_bundle_is_explained_with_its_torch_weights(tmp_path):
    from twinlens.engine.onnx_export import export_bundle
    from twinlens.engine.onnx_runtime import OnnxPredictor

    train_model(EngineTestPlugin(), dataset(evidence_samples(32, 3), SCHEMA), out_dir=tmp_path / "torch", spec=tiny_spec(),
                config=fast_config(epochs=1))
    export_bundle(tmp_path / "torch", tmp_path / "onnx")
    predictor = OnnxPredictor.from_bundle(tmp_path / "onnx")
    sample = evidence_samples(1, 51)[0]
    explanation = Explainer(predictor, tmp_path / "onnx").explain(predictor.preprocess(sample), predictor.predict([sample])[0])
    assert explanation.explained_by == "network" and "ONNX" in explanation.notes[0]
    assert explanation.heads["colour"].heatmap is not None
    assert [w.text for w in explanation.heads["animal"].words["text"]] == sample.texts["text"].split()


def test_an_ensemble_without_a_network_is_explained_by_its_tfidf_coefficients():
    from twinlens.engine.data import encode_targets
    from twinlens.engine.ensemble import EnsemblePredictor, LinearMember
    from twinlens.engine.linear import LinearHeads, TfidfText, fit_head

    samples = evidence_samples(80, 4)
    tfidf = TfidfText().fit([s.texts["text"] for s in samples])
    features = tfidf.transform([s.texts["text"] for s in samples])
    targets = encode_targets(samples, SCHEMA, {})
    heads = LinearHeads({t.name: fit_head(t, features, targets.values[t.name].numpy(), targets.masks[t.name].numpy(), C=10.0,
                                          balanced=False) for t in SCHEMA.tasks})
    member = LinearMember("tfidf", SCHEMA, {"text": tfidf}, None, heads)
    config = {"label_schema": SCHEMA.model_dump(mode="json"), "modalities": ["text"], "plugin": "engine_test", "version": "v"}
    ensemble = EnsemblePredictor([member], np.array([1.0]), config, None)
    top_is_label = 0
    for sample in evidence_samples(10, 97):
        case = ensemble.preprocess(sample)
        explanation = Explainer(ensemble).explain(case, ensemble.predict_encoded([case])[0])
        assert explanation.explained_by == "linear member 'tfidf'" and explanation.text_method == "coefficient x tf-idf"
        assert explanation.heads["colour"].heatmap is None and "no network member" in explanation.notes[0]
        spans = explanation.heads["animal"].words["text"]
        top_is_label += max(spans, key=lambda span: span.weight).text == sample.labels["animal"]
    assert top_is_label >= 9


def test_a_cached_model_explains_on_one_thread_while_another_predicts(trained):
    """The worker's threads share one loaded model. Integrated gradients hook the text
    encoder's embedding layer, so another thread's forward pass in between met the hook
    (with the bare predictor this loop fails inside captum: its baselines and inputs no
    longer have the same batch). The cache's SharedModel makes the calls take turns."""
    import threading

    from twinlens.worker.model_cache import SharedModel, model_turn

    shared = SharedModel(Predictor.from_bundle(trained / "cnn"))
    encoded = [shared.preprocess(sample) for sample in evidence_samples(8, 7)]
    expected = [p.heads["animal"].probabilities for p in shared.inner.predict_encoded(encoded, contributions=False)]
    explainer = Explainer(shared, ig_steps=8)
    failures: list[str] = []
    batches = 0
    done = threading.Event()

    def predicting() -> None:
        nonlocal batches
        while not done.is_set():
            try:
                got = [p.heads["animal"].probabilities for p in shared.predict_encoded(encoded, contributions=False)]
            except Exception as exc:  # noqa: BLE001 - the failure is what the test reports
                failures.append(f"predict: {exc!r}")
                continue
            batches += 1
            if any(abs(g[label] - e[label]) > 1e-5 for g, e in zip(got, expected) for label in e):
                failures.append("predict: another thread's explanation changed this batch's probabilities")

    other = threading.Thread(target=predicting)
    other.start()
    try:
        for _ in range(3):
            for item in encoded:
                with model_turn(shared):  # as a prediction batch holds it: predictions, then explanations
                    explanation = explainer.explain(item, shared.predict_encoded([item])[0])
                assert explanation.heads["animal"].words["text"], "the explanation weighs the words"
    finally:
        done.set()
        other.join()
    assert failures == []
    assert batches > 0, "the other thread predicted meanwhile"
