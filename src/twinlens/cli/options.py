"""Build DatasetOptions, ModelSpec and TrainConfig from a plugin's defaults, an optional
``--spec`` JSON file and command-line flags (flags win over the file, the file over the
plugin's defaults).

The spec and config are resolved by services.training_options, the policy the API's
training runs apply too; this module only parses flags and words failures as flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from twinlens.cli.common import UsageProblem, parse_pairs, read_json_file, split_list
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import DatasetOptions
from twinlens.contract.schema import TaskKind
from twinlens.contract.spec import ModelSpec, TrainConfig
from twinlens.services.training_options import (
    ModelChoices,
    TrainingChoices,
    UnknownModalities,
    resolve_model_spec,
    resolve_train_config,
)

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


def model_spec(
    base: ModelSpec,
    overrides: dict[str, Any],
    *,
    fusion: str | None = None,
    image_encoder: str | None = None,
    text_encoder: str | None = None,
    modalities: list[str] | None = None,
) -> ModelSpec:
    choices = ModelChoices(fusion=fusion, image_encoder=image_encoder, text_encoder=text_encoder,
                           modalities=split_list(modalities))
    try:
        return resolve_model_spec(base, overrides, choices)
    except UnknownModalities as exc:
        raise UsageProblem(f"--modalities {','.join(exc.chosen)}: choose from {', '.join(exc.known)}") from None
    except InputError as exc:
        raise UsageProblem(f"model spec: {exc.reason}") from None


def train_config(
    base: TrainConfig,
    overrides: dict[str, Any],
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
) -> TrainConfig:
    choices = TrainingChoices(epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)
    try:
        return resolve_train_config(base, overrides, choices)
    except InputError as exc:
        raise UsageProblem(f"training config: {exc.reason}") from None
