"""Train-time image augmentation: what it does to a batch, and that training uses it."""

import random

import pytest
import torch

from engine_helpers import EngineTestPlugin, fast_config, square_image, tiny_spec
from twinlens.engine.augment import augment_pixels
from twinlens.engine.data import collate
from twinlens.contract.plugin import Dataset
from twinlens.engine.predictor import Predictor
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.contract.spec import IMAGENET_MEAN, IMAGENET_STD, AugmentSpec
from twinlens.engine.training import _TrainingRun, split_dataset, train_model

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
SCHEMA = LabelSchema(tasks=(Task(name="colour", kind="multiclass", labels=(Label(name="red"), Label(name="blue"))),))
STILL = AugmentSpec(enabled=True, max_rotation=0, min_zoom=1, max_zoom=1, max_shift=0, brightness=0, contrast=0, colour=0)


def _batch(count=6, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, size, size, generator=generator)
    return (images - MEAN) / STD


def _colour_samples(n, seed):
    rng = random.Random(seed)
    colours = [rng.choice(["red", "blue"]) for _ in range(n)]
    return [Sample(image=square_image(c, rng), texts={"text": "see photo"}, labels={"colour": c}) for c in colours]


def test_zero_ranges_leave_the_batch_unchanged():
    pixels = _batch()
    out = augment_pixels(pixels, MEAN, STD, STILL, torch.Generator().manual_seed(1))
    assert torch.allclose(out, pixels, atol=1e-4)


def test_default_augmentation_changes_every_image_and_stays_in_range():
    pixels = _batch()
    out = augment_pixels(pixels, MEAN, STD, AugmentSpec(enabled=True), torch.Generator().manual_seed(1))
    assert out.shape == pixels.shape
    changed = (out - pixels).abs().flatten(1).mean(1)
    assert bool((changed > 0.01).all()), changed
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    assert bool((out >= low - 1e-5).all()) and bool((out <= high + 1e-5).all())


def test_same_generator_seed_same_augmentation():
    pixels = _batch()
    first = augment_pixels(pixels, MEAN, STD, AugmentSpec(enabled=True), torch.Generator().manual_seed(7))
    second = augment_pixels(pixels, MEAN, STD, AugmentSpec(enabled=True), torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_brightness_only_scales_the_unnormalised_image():
    pixels = torch.full((1, 3, 8, 8), 0.5)
    spec = AugmentSpec(enabled=True, max_rotation=0, min_zoom=1, max_zoom=1, max_shift=0, brightness=0.3, contrast=0, colour=0)
    out = augment_pixels((pixels - MEAN) / STD, MEAN, STD, spec, torch.Generator().manual_seed(3)) * STD + MEAN
    factor = out / pixels
    assert torch.allclose(factor, factor.flatten()[0].expand_as(factor), atol=1e-5)
    assert 0.7 <= float(factor.flatten()[0]) <= 1.3 and float(factor.flatten()[0]) != pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("enabled, frozen, expect_change", [(True, False, True), (False, False, False), (True, True, False)])
def test_training_step_augments_only_when_enabled_and_the_image_encoder_learns(enabled, frozen, expect_change):
    train, val = split_dataset(Dataset(_colour_samples(40, 1), SCHEMA), 0.25, 0)
    spec = tiny_spec()
    spec = spec.model_copy(update={"image_encoder": spec.image_encoder.model_copy(update={"freeze": frozen})})
    run = _TrainingRun(spec, fast_config(augment=AugmentSpec(enabled=enabled)), train, val, torch.device("cpu"))
    rows = torch.arange(8)
    batch = collate([run.train_encoded[i] for i in rows], run.pre)
    if frozen:
        batch["cached"] = {"image": (torch.zeros(8, 1, 4), torch.ones(8, 1))}
    before = batch["inputs"]["image"]["pixels"].clone()
    run._augment(batch)
    assert (not torch.equal(before, batch["inputs"]["image"]["pixels"])) is expect_change


def test_a_model_trained_with_augmentation_still_learns_and_predicts_unaugmented(tmp_path):
    config = fast_config(augment=AugmentSpec(enabled=True))
    train_model(EngineTestPlugin(), Dataset(_colour_samples(160, 2), SCHEMA), out_dir=tmp_path / "m",
                spec=tiny_spec(modalities=["image"]), config=config)
    probe = _colour_samples(40, 3)
    predictor = Predictor.from_bundle(tmp_path / "m")
    first, second = predictor.predict(probe, contributions=False), predictor.predict(probe, contributions=False)
    assert [p.heads["colour"].probabilities for p in first] == [p.heads["colour"].probabilities for p in second]
    accuracy = sum(p.heads["colour"].label == s.labels["colour"] for p, s in zip(first, probe)) / len(probe)
    assert accuracy >= 0.9
