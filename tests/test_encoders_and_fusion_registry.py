"""Encoders never download; a new fusion strategy is one class plus one registration."""

import time

import pytest
import torch

from engine_helpers import TINY_IMAGE, TINY_TEXT, XOR_SCHEMA, tiny_spec
from twinlens.engine.encoders import ImageEncoder, TextEncoder
from twinlens.contract.errors import WeightsUnavailableError
from twinlens.engine.fusion import FUSIONS, Fusion, register_fusion
from twinlens.engine.model import FusionModel
from twinlens.contract.spec import ImageEncoderSpec, TextEncoderSpec


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
        from twinlens.engine.data import Preprocessor, collate
        from twinlens.engine.encoders import load_tokenizer

        pre = Preprocessor(model.spec, load_tokenizer(TINY_TEXT.name))
        outputs = model(collate([pre.encode(s) for s in xor_samples(4, 0)], pre))
        assert outputs["xor"].shape == (4, 2)
    finally:
        FUSIONS.pop("test_max_pool")


def test_unknown_fusion_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown fusion strategy 'nope'"):
        FusionModel(tiny_spec("nope"), XOR_SCHEMA)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_lexical_branch_works_in_every_fusion_strategy(fusion):
    """Hashed n-grams reach the heads through any fusion: outputs change with a word that
    the (tiny, random) transformer cannot tell apart from its neighbour's padding."""
    from twinlens.engine.data import Preprocessor, collate
    from twinlens.engine.encoders import load_tokenizer
    from twinlens.contract.sample import Sample

    spec = tiny_spec(fusion, lexical_buckets=1 << 10)
    model = FusionModel(spec, XOR_SCHEMA).eval()
    pre = Preprocessor(spec, load_tokenizer(spec.text_encoder.name))
    encoded = [pre.encode(Sample(texts={"text": text})) for text in ("error E-4471", "error E-9038")]
    batch = collate(encoded, pre)
    assert batch["inputs"]["text"]["lexical_ids"].shape[0] == 2
    with torch.no_grad():
        with_lexical = model(batch)["xor"]
        model.lexical.weight.zero_()
        without = model(batch)["xor"]
    assert not torch.allclose(with_lexical, without)


def test_top_layer_fine_tuning_freezes_the_rest_and_decays_the_learning_rate():
    from twinlens.engine.training import _TrainingRun
    from twinlens.contract.plugin import Dataset
    from engine_helpers import xor_samples
    from twinlens.contract.spec import TrainConfig

    text = TINY_TEXT.model_copy(update={"pretrained": True, "train_top_layers": 1, "layer_lr_decay": 0.5,
                                        "config_overrides": {**TINY_TEXT.config_overrides, "num_hidden_layers": 3}})
    encoder = TextEncoder(text)
    layers = encoder.layers()
    assert len(layers) == 3
    assert all(p.requires_grad for p in layers[-1].parameters())
    assert not any(p.requires_grad for layer in layers[:-1] for p in layer.parameters())
    assert not any(p.requires_grad for p in encoder.model.embeddings.parameters())
    samples = xor_samples(8, 0)
    for s in samples:
        s.labels = {"xor": s.labels["xor"]}
    run = _TrainingRun(tiny_spec().model_copy(update={"text_encoder": text.model_copy(update={"train_top_layers": 2})}),
                       TrainConfig(progress=False), Dataset(samples, XOR_SCHEMA), Dataset(samples, XOR_SCHEMA), torch.device("cpu"))
    optimizer, _ = run._optimizer(10)
    # Random-init (config_overrides) text layers learn at the main rate: top lr, next 0.5 * lr.
    layer_rates = [group["lr"] for group in optimizer.param_groups[1:]]
    assert layer_rates == [pytest.approx(run.config.lr), pytest.approx(run.config.lr * 0.5)]
    counted = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert counted == sum(p.numel() for p in run.model.parameters() if p.requires_grad)
