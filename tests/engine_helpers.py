"""Small data sets and tiny model specs for engine tests (fast on 2 CPU cores)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from twinlens.contract.plugin import Dataset, DatasetOptions, Plugin
from twinlens.contract.prediction import Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import InputSchema, Label, LabelSchema, Task
from twinlens.contract.spec import ImageEncoderSpec, ModelSpec, TextEncoderSpec, TrainConfig

TINY_TEXT = TextEncoderSpec(
    pretrained=False,
    config_overrides={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    max_length=24,
)
TINY_IMAGE = ImageEncoderSpec(name="test_resnet", image_size=32)


def tiny_spec(fusion: str = "concat", modalities: list[str] | None = None, **kw: Any) -> ModelSpec:
    return ModelSpec(image_encoder=TINY_IMAGE, text_encoder=TINY_TEXT, fusion=fusion, hidden_dim=32,
                     dropout=0.0, modalities=modalities or ["image", "text"], **kw)


def fast_config(**kw: Any) -> TrainConfig:
    values = dict(epochs=12, batch_size=32, lr=3e-3, patience=4, progress=False, seed=0, modality_dropout=0.0)
    values.update(kw)
    return TrainConfig(**values)


COLOURS = {"red": (200, 40, 40), "blue": (40, 60, 200)}
ANIMALS = ["cat", "dog"]
PHRASES = ["the note says {}", "{} mentioned here", "ticket about a {}", "customer wrote {} today", "{}"]


def square_image(colour: str, rng: random.Random) -> Image.Image:
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(90, 160, (32, 32, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    x, y = rng.randrange(0, 14), rng.randrange(0, 14)
    image.paste(Image.new("RGB", (16, 16), COLOURS[colour]), (x, y))
    return image


def xor_samples(n: int, seed: int, *, missing_image: float = 0.0, missing_text: float = 0.0) -> list[Sample]:
    """Label "same" when (red, cat) or (blue, dog): needs both modalities; each alone is chance."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        colour, animal = rng.choice(list(COLOURS)), rng.choice(ANIMALS)
        label = "same" if (colour == "red") == (animal == "cat") else "different"
        image = None if rng.random() < missing_image else square_image(colour, rng)
        text = None if (image is not None and rng.random() < missing_text) else rng.choice(PHRASES).format(animal)
        samples.append(Sample(image=image, texts={"text": text}, labels={"xor": label, "colour": colour, "animal": animal}, id=str(i)))
    return samples


XOR_SCHEMA = LabelSchema(tasks=(Task(name="xor", kind="multiclass", labels=(Label(name="different"), Label(name="same"))),))


def dataset(samples: list[Sample], schema: LabelSchema = XOR_SCHEMA) -> Dataset:
    keep = set(schema.task_names)
    for sample in samples:
        sample.labels = {k: v for k, v in sample.labels.items() if k in keep}
    return Dataset(samples, schema)


class EngineTestPlugin(Plugin):
    """A minimal plugin so train_model has something to name the bundle after."""

    name = "engine_test"
    description = "engine tests"

    def label_schema(self):
        return None

    def input_schema(self):
        return InputSchema()

    def default_model_spec(self):
        return tiny_spec()

    def training_defaults(self):
        return fast_config()

    def read_dataset(self, path: Path, options: DatasetOptions | None = None) -> Dataset:
        raise NotImplementedError("engine tests build data in memory")

    def make_sample_dataset(self, out_dir: Path, n: int = 200, seed: int = 0) -> Path:
        raise NotImplementedError("engine tests build data in memory")

    def decide(self, prediction: Prediction) -> dict[str, Any]:
        return {"needs_review": False}
