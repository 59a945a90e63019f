"""The label is an XOR of an image property (colour) and a text property (animal):
every fusion strategy must learn it; one modality alone cannot beat chance by much."""

import pytest

from engine_helpers import EngineTestPlugin, dataset, fast_config, tiny_spec, xor_samples
from twinlens.engine.evaluation import evaluate_bundle
from twinlens.engine.fusion import FUSIONS
from twinlens.engine.training import train_model

STRATEGIES = ["concat", "weighted", "gated", "cross_attention", "early"]


@pytest.fixture(scope="module")
def splits():
    return xor_samples(400, seed=1), xor_samples(100, seed=2), xor_samples(200, seed=3)


def _held_out_accuracy(tmp_path, splits, fusion, modalities):
    train, val, test = splits
    result = train_model(EngineTestPlugin(), dataset(list(train)), val=dataset(list(val)), out_dir=tmp_path / "bundle",
                         spec=tiny_spec(fusion, modalities), config=fast_config())
    return evaluate_bundle(result.bundle_dir, dataset(list(test)))["heads"]["xor"]["accuracy"]


def test_all_five_strategies_are_registered():
    assert set(STRATEGIES) <= set(FUSIONS)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", STRATEGIES)
def test_fusion_learns_what_needs_both_modalities(tmp_path, splits, fusion):
    assert _held_out_accuracy(tmp_path, splits, fusion, ["image", "text"]) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["image", "text"])
def test_single_modality_cannot_learn_the_xor(tmp_path, splits, modality):
    assert _held_out_accuracy(tmp_path, splits, "concat", [modality]) <= 0.65
