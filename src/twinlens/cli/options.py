"""Build DatasetOptions, ModelSpec and TrainConfig from a plugin's defaults, an optional
``--spec`` JSON file and command-line flags (flags win over the file, the file over the
plugin's defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from twinlens.cli.common import UsageProblem, parse_pairs, read_json_file, split_list
from twinlens.contract.plugin import DatasetOptions
from twinlens.contract.schema import TaskKind
from twinlens.contract.spec import ModelSpec, TrainConfig

SPEC_SECTIONS = ("model", "train")


def dataset_options(
    *,
    image_col: str | None = None,
    text_col: str | None = None,
    label_cols: list[str] | None = None,
    task_kinds: list[str] | None = None,
    text_required: bool = False,
    skip_bad_rows: bool = False,
    default_label_cols: list[str] | None = None,
    group_col: str | None = None,
) -> DatasetOptions:
    """Only flags actually given are set, so readers can tell a named column from a default."""
    given: dict[str, Any] = {"text_required": text_required, "skip_bad_rows": skip_bad_rows}
    if image_col is not None:
        given["image_col"] = image_col
    if text_col is not None:
        given["text_col"] = text_col
    if group_col is not None:
        given["group_col"] = group_col
    labels = split_list(label_cols) or default_label_cols
    if labels:
        given["label_cols"] = labels
    kinds = parse_pairs(split_list(task_kinds), "--task-kind")
    allowed = get_args(TaskKind)
    for column, kind in kinds.items():
        if kind not in allowed:
            raise UsageProblem(f"--task-kind {column}={kind}: kind must be one of {', '.join(allowed)}")
    if kinds:
        given["task_kinds"] = kinds
    return DatasetOptions(**given)


def load_spec_file(path: Path | None) -> dict[str, dict[str, Any]]:
    """``{"model": {...ModelSpec fields}, "train": {...TrainConfig fields}}``, both optional."""
    if path is None:
        return {section: {} for section in SPEC_SECTIONS}
    data = read_json_file(path, "--spec")
    if not isinstance(data, dict) or set(data) - set(SPEC_SECTIONS):
        raise UsageProblem(f"--spec {path}: expected an object with only the keys {list(SPEC_SECTIONS)}")
    for section in SPEC_SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise UsageProblem(f"--spec {path}: {section!r} must be an object")
    return {section: data.get(section, {}) for section in SPEC_SECTIONS}


def merged(base: BaseModel, overrides: dict[str, Any], what: str) -> Any:
    """`base` with `overrides` applied, nested objects merged key by key, then re-validated."""
    data = _deep_merge(base.model_dump(), overrides)
    try:
        return type(base).model_validate(data)
    except ValidationError as exc:
        raise UsageProblem(f"{what}: {_describe(exc)}") from None


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict) and key not in ("kwargs", "fusion_options", "config_overrides"):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())


def model_spec(
    base: ModelSpec,
    overrides: dict[str, Any],
    *,
    fusion: str | None = None,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    modalities: list[str] | None = None,
) -> ModelSpec:
    flags: dict[str, Any] = {}
    if fusion:
        flags["fusion"] = fusion
    if image_encoder:
        flags["image_encoder"] = {"name": image_encoder}
    if text_encoder:
        flags["text_encoder"] = {"name": text_encoder}
    chosen = split_list(modalities)
    if chosen:
        flags["modalities"] = chosen
    spec = merged(base, _deep_merge(overrides, flags), "model spec")
    _check_modalities(spec)
    return spec


def _check_modalities(spec: ModelSpec) -> None:
    known = spec.all_modalities()
    unknown = [name for name in spec.modalities if name not in known]
    if unknown or not spec.modalities:
        raise UsageProblem(f"--modalities {','.join(spec.modalities)}: choose from {', '.join(known)}")


def train_config(
    base: TrainConfig,
    overrides: dict[str, Any],
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
) -> TrainConfig:
    flags = {name: value for name, value in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed), ("progress", progress)) if value is not None}
    return merged(base, {**overrides, **flags}, "training config")
