"""Any timm model as an image encoder producing a token sequence (patches or regions)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from twinlens.contract.errors import WeightsUnavailableError
from twinlens.contract.spec import ImageEncoderSpec


class ImageEncoder(nn.Module):
    """Wraps a timm backbone; forward returns (B, N, C) tokens.

    CNN feature maps become one token per spatial cell; ViT-style models already return
    tokens. `num_features` is C.
    """

    def __init__(self, spec: ImageEncoderSpec, *, load_weights: bool = True):
        super().__init__()
        self.spec = spec
        self.backbone = _create_backbone(spec, load_weights=load_weights)
        self.num_features = int(self.backbone.num_features)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(pixels)
        if isinstance(features, (list, tuple)):
            features = features[-1]
        if features.ndim == 4:  # (B, C, H, W) -> (B, H*W, C)
            return features.flatten(2).transpose(1, 2)
        if features.ndim == 2:
            return features.unsqueeze(1)
        return features


def _create_backbone(spec: ImageEncoderSpec, *, load_weights: bool) -> nn.Module:
    if spec.name not in timm.list_models() and spec.name not in timm.list_models(pretrained=True):
        raise ValueError(f"unknown timm image model {spec.name!r}")
    kwargs = {"num_classes": 0, **spec.kwargs}
    if "img_size" not in kwargs and _takes_img_size(spec.name):
        kwargs["img_size"] = spec.image_size
    use_hub_weights = load_weights and spec.pretrained is True
    try:
        model = timm.create_model(spec.name, pretrained=use_hub_weights, **kwargs)
    except Exception as exc:
        if use_hub_weights:
            raise WeightsUnavailableError(
                f"pretrained weights for {spec.name!r} are not in the local Hugging Face cache and "
                f"TwinLens never downloads; pass a local .safetensors path or pretrained=false ({exc})"
            ) from exc
        raise
    if load_weights and isinstance(spec.pretrained, str):
        _load_local_weights(model, Path(spec.pretrained), spec.name)
    return model


def _takes_img_size(name: str) -> bool:
    # Transformers with fixed position embeddings need the input size at build time.
    return any(part in name for part in ("vit", "deit", "eva", "beit", "swin", "maxvit", "coatnet"))


def _load_local_weights(model: nn.Module, path: Path, name: str) -> None:
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise WeightsUnavailableError(f"image weights for {name!r} not found at {file}")
    if file.suffix != ".safetensors":
        raise WeightsUnavailableError(f"{file}: only .safetensors weights are loaded (no pickle)")
    state = load_file(str(file))
    own = model.state_dict()
    # Classifier weights of the source checkpoint do not apply to a headless backbone.
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise WeightsUnavailableError(f"{file} holds no weights matching timm model {name!r}")
    model.load_state_dict(usable, strict=False)
