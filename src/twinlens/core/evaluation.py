"""Evaluate a bundle on a labelled data set: the same report training writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinlens.core.bundle import load_bundle
from twinlens.core.data import Preprocessor, encode_targets
from twinlens.core.errors import TwinLensError
from twinlens.core.inference import infer_logits, pick_device
from twinlens.core.plugin import Dataset
from twinlens.core.reporting import outputs_report


def evaluate_bundle(bundle_dir: Path, dataset: Dataset, *, modalities: list[str] | None = None, batch_size: int = 64, device: str | None = None) -> dict[str, Any]:
    model, tokenizer, config = load_bundle(bundle_dir)
    schema = model.label_schema
    unknown = set(schema.task_names) - set(dataset.label_schema.task_names)
    if unknown:
        raise TwinLensError(f"data set has no labels for task(s) {sorted(unknown)} of this model")
    _check_labels(dataset, schema)
    if modalities is not None:
        bad = set(modalities) - set(model.spec.all_modalities())
        if bad:
            raise TwinLensError(f"unknown modalities {sorted(bad)}; this model has {model.spec.all_modalities()}")
    torch_device = pick_device(device)
    model.to(torch_device)
    pre = Preprocessor(model.spec, tokenizer)
    stats = {k: tuple(v) for k, v in config.get("regression_stats", {}).items()}
    logits = infer_logits(model, pre, pre.encode_many(dataset.samples), device=torch_device, batch_size=batch_size, modalities=modalities)
    targets = encode_targets(dataset.samples, schema, stats, "ignore")
    report = outputs_report(schema, logits, targets, config.get("temperatures", {}), stats)
    report["model_version"] = config["version"]
    report["modalities"] = modalities or model.spec.modalities
    return report


def _check_labels(dataset: Dataset, schema) -> None:
    for task in schema.tasks:
        if task.kind == "regression":
            continue
        known = set(task.label_names)
        for sample in dataset.samples:
            value = sample.labels.get(task.name)
            values = value if isinstance(value, list) else [value] if value is not None else []
            strange = [v for v in values if v not in known]
            if strange:
                raise TwinLensError(f"task {task.name!r}: label(s) {strange} unknown to this model (knows {sorted(known)})")
