"""`twinlens train` and `POST /v1/training-runs` resolve the same overrides to the same
model spec and training config: both go through services.training_options."""

from __future__ import annotations

import json
from typing import Any

import pytest

from twinlens.api.schemas import TrainingRunCreate
from twinlens.cli import options
from twinlens.cli.common import UsageProblem
from twinlens.contract.errors import InputError
from twinlens.contract.spec import ImageEncoderSpec, ModelSpec
from twinlens.generic import GenericPlugin
from twinlens.services import training
from twinlens.services.training_options import deep_merge

# Nested objects merged key by key, free-form ones replaced whole, and every named option.
SPEC_FILE = {
    "model": {
        "image_encoder": {"image_size": 96, "kwargs": {"drop_rate": 0.2}},
        "text_encoder": {"max_length": 64, "config_overrides": {"num_hidden_layers": 2}},
        "fusion_options": {"heads": 2},
        "hidden_dim": 48,
    },
    "train": {"lr": 0.01, "augment": {"enabled": True, "max_rotation": 5.0}, "epochs": 99},
}
NAMED = {"fusion": "gated", "image_encoder": "resnet34", "text_encoder": "prajjwal1/bert-tiny", "modalities": "image",
         "epochs": 4, "batch_size": 8, "seed": 7}


class PluginWithOpaqueDefaults(GenericPlugin):
    """Defaults with keys in the free-form objects, so a key-by-key merge would show."""

    def default_model_spec(self) -> ModelSpec:
        return ModelSpec(image_encoder=ImageEncoderSpec(kwargs={"global_pool": "avg", "drop_rate": 0.0}),
                         fusion_options={"heads": 8, "depth": 3})


def _through_cli(tmp_path, plugin, spec_file: dict[str, Any], named: dict[str, Any]):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec_file))
    overrides = options.load_spec_file(path)
    # As `twinlens train` passes them: --modalities is one comma list; workers never show progress.
    spec = options.model_spec(plugin.default_model_spec(), overrides["model"], fusion=named.get("fusion"),
                              image_encoder=named.get("image_encoder"), text_encoder=named.get("text_encoder"),
                              modalities=[named["modalities"]] if named.get("modalities") else None)
    config = options.train_config(plugin.training_defaults(), overrides["train"], epochs=named.get("epochs"),
                                  batch_size=named.get("batch_size"), seed=named.get("seed"), progress=False)
    return spec, config


def _through_api(plugin, spec_file: dict[str, Any], named: dict[str, Any]):
    body = {"plugin": plugin.name, "data_path": "/data", "output_dir": "/out",
            "model_spec": spec_file.get("model"), "train_config": spec_file.get("train"), **named}
    if named.get("modalities"):
        body["modalities"] = named["modalities"].split(",")
    request = TrainingRunCreate.model_validate(body).to_training_request()
    return training.resolve_model_spec(plugin, request), training.resolve_train_config(plugin, request)


@pytest.mark.parametrize("plugin", [GenericPlugin(), PluginWithOpaqueDefaults()], ids=["generic", "opaque-defaults"])
@pytest.mark.parametrize("named", [NAMED, {}], ids=["named-options", "file-only"])
def test_cli_and_api_resolve_the_same_spec_and_config(tmp_path, plugin, named):
    cli_spec, cli_config = _through_cli(tmp_path, plugin, SPEC_FILE, named)
    api_spec, api_config = _through_api(plugin, SPEC_FILE, named)
    assert cli_spec == api_spec
    assert cli_config == api_config


def test_the_resolution_order_and_merge_rules(tmp_path):
    spec, config = _through_cli(tmp_path, PluginWithOpaqueDefaults(), SPEC_FILE, NAMED)
    assert spec.image_encoder.name == "resnet34" and spec.image_encoder.image_size == 96  # named wins, file kept
    assert spec.image_encoder.kwargs == {"drop_rate": 0.2}, "free-form objects are replaced, not merged"
    assert spec.fusion_options == {"heads": 2}
    assert spec.text_encoder.max_length == 64 and spec.text_encoder.pretrained is True  # merged key by key
    assert spec.modalities == ["image"] and spec.fusion == "gated"
    assert config.epochs == 4, "a named option wins over the file"
    assert config.augment.enabled and config.augment.max_rotation == 5.0 and config.augment.min_zoom == 0.9
    assert (config.lr, config.batch_size, config.seed, config.progress) == (0.01, 8, 7, False)


def test_deep_merge_keeps_the_base_and_replaces_free_form_objects():
    base = {"a": {"x": 1, "y": 2}, "kwargs": {"old": 1}, "n": 1}
    merged = deep_merge(base, {"a": {"y": 3}, "kwargs": {"new": 2}, "m": 4})
    assert merged == {"a": {"x": 1, "y": 3}, "kwargs": {"new": 2}, "n": 1, "m": 4}
    assert base == {"a": {"x": 1, "y": 2}, "kwargs": {"old": 1}, "n": 1}, "the base is not modified"


@pytest.mark.parametrize(
    ("spec_file", "named", "cli_message", "api_field"),
    [
        ({}, {"modalities": "image,smell"}, "--modalities image,smell: choose from image, text", "modalities"),
        ({"model": {"hidden_dim": "wide"}}, {}, "model spec: hidden_dim", "model_spec"),
        ({"model": {"no_such_field": 1}}, {}, "model spec: no_such_field", "model_spec"),
        ({"train": {"loss": "hinge"}}, {}, "training config: loss", "train_config"),
    ],
)
def test_cli_and_api_refuse_the_same_overrides(tmp_path, spec_file, named, cli_message, api_field):
    plugin = GenericPlugin()
    with pytest.raises(UsageProblem) as cli_error:
        _through_cli(tmp_path, plugin, spec_file, named)
    with pytest.raises(InputError) as api_error:
        _through_api(plugin, spec_file, named)
    assert str(cli_error.value).startswith(cli_message)
    assert api_error.value.field == api_field
