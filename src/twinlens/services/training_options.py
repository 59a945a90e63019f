"""How a model spec and a training config are resolved from what a user asks for.

The one policy both `twinlens train` (cli/options.py) and `POST /v1/training-runs`
(services/training.py) apply, so the same request trains the same model either way:
the plugin's default, then a partial object of fields (the CLI's --spec file, the API's
`model_spec` / `train_config`), then the named options (flags, request fields), which win.
Nested objects merge key by key, except the free-form ones in OPAQUE_SPEC_KEYS, which an
override replaces whole.

Pure schema logic: no torch, no database, so the CLI and the API can both import it.
Failures are InputErrors naming the request field at fault; the CLI words them as flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from twinlens.contract.errors import InputError
from twinlens.contract.spec import ModelSpec, TrainConfig

# Their keys are free-form (timm kwargs, fusion options, a text model's config), so a
# key-by-key merge could leave stale keys from the default next to the user's.
OPAQUE_SPEC_KEYS = ("kwargs", "fusion_options", "config_overrides")
MODEL_SPEC_FIELD = "model_spec"
TRAIN_CONFIG_FIELD = "train_config"

Spec = TypeVar("Spec", bound=BaseModel)


@dataclass(frozen=True)
class ModelChoices:
    """The named model options; None (or empty) keeps what the spec says."""

    fusion: str | None = None
    image_encoder: str | None = None
    text_encoder: str | None = None
    modalities: Sequence[str] | None = None


@dataclass(frozen=True)
class TrainingChoices:
    """The named training options; None keeps what the config says."""

    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    progress: bool | None = None


class UnknownModalities(InputError):
    """The spec names modalities its model cannot read (or none at all)."""

    def __init__(self, chosen: Sequence[str], known: Sequence[str]):
        super().__init__("modalities", f"{list(chosen)}: choose from {', '.join(known)}")
        self.chosen = list(chosen)
        self.known = list(known)


def resolve_model_spec(base: ModelSpec, fields: Mapping[str, Any] | None, choices: ModelChoices) -> ModelSpec:
    """`base`, then `fields` (partial ModelSpec), then the named `choices`."""
    spec = merge_validated(base, deep_merge(dict(fields or {}), _model_overrides(choices)), MODEL_SPEC_FIELD)
    known = spec.all_modalities()
    if not spec.modalities or any(name not in known for name in spec.modalities):
        raise UnknownModalities(spec.modalities, known)
    return spec


def _model_overrides(choices: ModelChoices) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if choices.fusion:
        overrides["fusion"] = choices.fusion
    if choices.image_encoder:
        overrides["image_encoder"] = {"name": choices.image_encoder}
    if choices.text_encoder:
        overrides["text_encoder"] = {"name": choices.text_encoder}
    if choices.modalities:
        overrides["modalities"] = list(choices.modalities)
    return overrides


def resolve_train_config(base: TrainConfig, fields: Mapping[str, Any] | None, choices: TrainingChoices) -> TrainConfig:
    """`base`, then `fields` (partial TrainConfig), then the named `choices`."""
    named = {"epochs": choices.epochs, "batch_size": choices.batch_size, "seed": choices.seed, "progress": choices.progress}
    overrides = {**(fields or {}), **{name: value for name, value in named.items() if value is not None}}
    return merge_validated(base, overrides, TRAIN_CONFIG_FIELD)


def merge_validated(base: Spec, overrides: Mapping[str, Any], field_name: str) -> Spec:
    """`base` with `overrides` merged in, validated again as `base`'s type."""
    try:
        return type(base).model_validate(deep_merge(base.model_dump(mode="json"), overrides))
    except ValidationError as exc:
        raise InputError(field_name, describe_validation(exc)) from None


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping) and key not in OPAQUE_SPEC_KEYS:
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def describe_validation(exc: ValidationError) -> str:
    """Every problem as `path: message`, joined: one line a user can act on."""
    return "; ".join(f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}" for error in exc.errors())
