"""Encoders never download; a new fusion strategy is one class plus one registration."""

import time

import pytest
import torch

from engine_helpers import TINY_IMAGE, TINY_TEXT, XOR_SCHEMA, tiny_spec
from twinlens.core.encoders import ImageEncoder, TextEncoder
from twinlens.core.errors import WeightsUnavailableError
from twinlens.core.fusion import FUSIONS, Fusion, register_fusion
from twinlens.core.model import FusionModel
from twinlens.core.spec import ImageEncoderSpec, TextEncoderSpec


def test_pretrained_minilm_loads_offline_and_embeds():
    encoder = TextEncoder(TextEncoderSpec())
    assert encoder.num_features == 384
    ids = torch.tensor([[101, 7592, 2088, 102]])
    assert encoder(ids, torch.ones_like(ids)).shape == (1, 4, 384)


@pytest.mark.parametrize("make", [
    lambda: TextEncoder(TextEncoderSpec(name="some-org/not-on-this-machine")),
    lambda: ImageEncoder(ImageEncoderSpec(name="resnet18", pretrained=True)),
    lambda: ImageEncoder(ImageEncoderSpec(name="resnet18", pretrained="/nonexistent/weights.safetensors")),
])
def test_missing_weights_fail_fast_with_a_clear_error(make):
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="never downloads|not found"):
        make()
    assert time.monotonic() - started < 30  # an error, not a hang on the network


def test_local_safetensors_image_weights_are_loaded(tmp_path):
    from safetensors.torch import save_file

    source = ImageEncoder(TINY_IMAGE)
    save_file(source.backbone.state_dict(), tmp_path / "w.safetensors")
    loaded = ImageEncoder(TINY_IMAGE.model_copy(update={"pretrained": str(tmp_path / "w.safetensors")}))
    pixels = torch.randn(1, 3, 32, 32)
    source.eval(), loaded.eval()
    assert torch.allclose(source(pixels), loaded(pixels))


def test_a_sixth_strategy_is_one_class_and_one_registration():
    @register_fusion("test_max_pool")
    class MaxPoolFusion(Fusion):
        def forward(self, features):
            return torch.stack(self.pooled(features), 1).max(1).values

    try:
        model = FusionModel(tiny_spec("test_max_pool"), XOR_SCHEMA)
        from engine_helpers import xor_samples
        from twinlens.core.data import Preprocessor, collate
        from twinlens.core.encoders import load_tokenizer

        pre = Preprocessor(model.spec, load_tokenizer(TINY_TEXT.name))
        outputs = model(collate([pre.encode(s) for s in xor_samples(4, 0)], pre))
        assert outputs["xor"].shape == (4, 2)
    finally:
        FUSIONS.pop("test_max_pool")


def test_unknown_fusion_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown fusion strategy 'nope'"):
        FusionModel(tiny_spec("nope"), XOR_SCHEMA)
