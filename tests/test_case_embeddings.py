"""Case embeddings come out of the pass that predicts: the torch predictor, the ONNX graph
(the same vectors, within float tolerance) and an ensemble's network member give a fused
vector per row and one per present modality; a missing modality has none."""

from __future__ import annotations

import numpy as np
import pytest

from engine_helpers import EngineTestPlugin, dataset, fast_config, tiny_spec, xor_samples
from twinlens.engine.onnx_export import export_bundle
from twinlens.engine.onnx_runtime import OnnxPredictor
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeddings")
    plugin = EngineTestPlugin()
    train_model(plugin, dataset(xor_samples(120, 1)), out_dir=root / "torch", spec=tiny_spec(),
                config=fast_config(epochs=3))
    export_bundle(root / "torch", root / "onnx")
    return root / "torch", root / "onnx"


def _rows():
    samples = xor_samples(6, 7, missing_image=0.0)
    samples[1].image = None
    samples[2].texts = {"text": None}
    return samples


@pytest.mark.parametrize("contributions", [True, False])
def test_the_torch_predictor_gives_each_case_its_embeddings(bundles, contributions):
    predictor = Predictor.from_bundle(bundles[0], device="cpu")
    predictions = predictor.predict(_rows(), contributions=contributions)
    assert [sorted(p.embeddings) for p in predictions[:3]] == [["fused", "image", "text"], ["fused", "text"], ["fused", "image"]]
    for prediction in predictions:
        assert all(v.dtype == np.float32 and v.shape == (32,) and np.isfinite(v).all() for v in prediction.embeddings.values())
        assert "embeddings" not in prediction.to_dict()  # never part of the stored result
    # Rows differ, and each row's vector does not depend on the batch it ran in.
    assert not np.allclose(predictions[0].embeddings["fused"], predictions[3].embeddings["fused"])
    alone = predictor.predict(_rows()[3:4], contributions=contributions)[0]
    np.testing.assert_allclose(alone.embeddings["fused"], predictions[3].embeddings["fused"], atol=1e-5)


def test_the_onnx_graph_gives_the_same_embeddings(bundles):
    torch_rows = Predictor.from_bundle(bundles[0], device="cpu").predict(_rows())
    onnx = OnnxPredictor.from_bundle(bundles[1])
    assert [name for name in onnx.embedding_names] == ["embedding.fused", "embedding.image", "embedding.text"]
    onnx_rows = onnx.predict(_rows())
    for a, b in zip(torch_rows, onnx_rows):
        assert sorted(a.embeddings) == sorted(b.embeddings)
        for kind in a.embeddings:
            np.testing.assert_allclose(a.embeddings[kind], b.embeddings[kind], atol=1e-4)
