"""Logits + targets -> the metrics report (calibrated, regression de-standardised)."""

from __future__ import annotations

from typing import Any

import torch

from twinlens.engine.data import Targets
from twinlens.engine.heads import probabilities
from twinlens.engine.metrics import full_report
from twinlens.contract.schema import LabelSchema


def calibrated_outputs(schema: LabelSchema, logits: dict[str, torch.Tensor], temperatures: dict[str, float], stats: dict[str, tuple[float, float]]) -> dict[str, torch.Tensor]:
    outputs = {}
    for task in schema.tasks:
        values = probabilities(task, logits[task.name], temperatures.get(task.name, 1.0))
        if task.kind == "regression":
            mean, std = stats[task.name]
            values = values * std + mean
        outputs[task.name] = values
    return outputs


def outputs_report(schema: LabelSchema, logits: dict[str, torch.Tensor], targets: Targets, temperatures: dict[str, float], stats: dict[str, tuple[float, float]]) -> dict[str, Any]:
    outputs = calibrated_outputs(schema, logits, temperatures, stats)
    truth = {}
    for task in schema.tasks:
        values = targets.values[task.name]
        if task.kind == "regression":
            mean, std = stats[task.name]
            values = values * std + mean
        truth[task.name] = values.numpy()
    return full_report(schema, {k: v.numpy() for k, v in outputs.items()}, truth, {k: m.numpy() for k, m in targets.masks.items()})
