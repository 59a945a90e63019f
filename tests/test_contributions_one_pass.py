"""Modality contributions from one encoder pass give the same numbers as masking each
modality and running the whole model again, for every fusion strategy, and the encoders
run once per batch instead of once per masked modality."""

from __future__ import annotations

import pytest
import torch

from engine_helpers import EngineTestPlugin, dataset, fast_config, tiny_spec, xor_samples
from twinlens.engine.fusion import FUSIONS
from twinlens.engine.predictor import Predictor, contribution_masks, modality_contributions
from twinlens.engine.training import train_model


@pytest.fixture(scope="module", params=sorted(FUSIONS))
def predictor(request, tmp_path_factory) -> Predictor:
    out = tmp_path_factory.mktemp(f"one-pass-{request.param}") / "bundle"
    train = dataset(xor_samples(120, seed=21, missing_image=0.2, missing_text=0.2))
    train_model(EngineTestPlugin(), train, out_dir=out, spec=tiny_spec(request.param), config=fast_config(epochs=2))
    return Predictor.from_bundle(out)


def _contributions_by_re_running(predictor: Predictor, encoded) -> list[dict[str, float]]:
    """What predict_encoded did before: each masked modality costs a full model pass."""
    present = predictor._present(encoded)
    full = predictor.outputs(encoded)
    masked = contribution_masks(predictor.spec.modalities, present)
    without = {m: predictor.outputs(encoded, [o for o in predictor.spec.modalities if o != m]) for m in masked}
    return modality_contributions(without, full, present, predictor.label_schema, predictor.stats)


def test_one_pass_contributions_equal_re_running_the_model(predictor):
    samples = xor_samples(24, seed=22, missing_image=0.25, missing_text=0.25)
    encoded = [predictor.preprocess(s) for s in samples]
    expected = _contributions_by_re_running(predictor, encoded)
    predictions = predictor.predict_encoded(encoded)
    assert any(len(p.contributions) == 2 for p in predictions)  # some rows have both inputs
    for prediction, want in zip(predictions, expected):
        assert prediction.contributions.keys() == want.keys()
        for modality, share in want.items():
            assert prediction.contributions[modality] == pytest.approx(share, abs=1e-5)
    full = predictor.outputs(encoded)
    for task in predictor.label_schema.tasks:  # the answers themselves are unchanged too
        values = torch.stack([torch.tensor([p.heads[task.name].probabilities[label] for label in task.label_names])
                              for p in predictions])
        assert torch.allclose(values, full[task.name], atol=1e-5)


def test_encoders_run_once_per_batch_with_contributions(predictor, monkeypatch):
    calls: list[str] = []
    real = predictor.model.encode_raw

    def counting(modality, inputs):
        calls.append(modality)
        return real(modality, inputs)

    monkeypatch.setattr(predictor.model, "encode_raw", counting)
    encoded = [predictor.preprocess(s) for s in xor_samples(16, seed=23)]
    predictor.predict_encoded(encoded, batch_size=16)
    assert sorted(calls) == ["image", "text"]  # one batch, each encoder once (it was three passes)
