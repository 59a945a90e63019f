"""Evaluate a bundle on a labelled data set: the same report training writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinlens.engine.bundle import load_bundle
from twinlens.engine.data import Preprocessor, encode_targets
from twinlens.contract.errors import TwinLensError
from twinlens.engine.inference import infer_logits, pick_device
from twinlens.contract.plugin import Dataset
from twinlens.engine.reporting import outputs_report


def evaluate_bundle(bundle_dir: Path, dataset: Dataset, *, modalities: list[str] | None = None, batch_size: int = 64, device: str | None = None,
                    runtime: str = "torch") -> dict[str, Any]:
    """`runtime="onnx"`: the bundle's ONNX graph on onnxruntime (torch when it has none)."""
    from twinlens.contract.bundle_files import read_bundle_config

    if read_bundle_config(bundle_dir).get("kind") == "ensemble":
        return evaluate_ensemble(bundle_dir, dataset, modalities=modalities, device=device, runtime=runtime)
    onnx = _onnx_predictor(bundle_dir, device) if runtime == "onnx" else None
    if onnx is not None:
        spec, schema, config, pre = onnx.spec, onnx.label_schema, onnx.config, onnx.pre
    else:
        model, tokenizer, config = load_bundle(bundle_dir)
        spec, schema = model.spec, model.label_schema
    _check_tasks(dataset, schema)
    _check_labels(dataset, schema)
    if modalities is not None:
        bad = set(modalities) - set(spec.all_modalities())
        if bad:
            raise TwinLensError(f"unknown modalities {sorted(bad)}; this model has {spec.all_modalities()}")
    stats = {k: tuple(v) for k, v in config.get("regression_stats", {}).items()}
    if onnx is not None:
        logits = onnx.logits(pre.encode_many(dataset.samples), modalities, batch_size)
    else:
        torch_device = pick_device(device)
        model.to(torch_device)
        pre = Preprocessor(spec, tokenizer)
        logits = infer_logits(model, pre, pre.encode_many(dataset.samples), device=torch_device, batch_size=batch_size, modalities=modalities)
    targets = encode_targets(dataset.samples, schema, stats, "ignore")
    report = outputs_report(schema, logits, targets, config.get("temperatures", {}), stats)
    report["model_version"] = config["version"]
    report["modalities"] = modalities or spec.modalities
    return report


def _onnx_predictor(bundle_dir: Path, device: str | None):
    from twinlens.engine.onnx_runtime import load_onnx_or_none

    return load_onnx_or_none(bundle_dir, device)


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


def evaluate_ensemble(bundle_dir: Path, dataset: Dataset, *, modalities: list[str] | None = None, device: str | None = None,
                      runtime: str = "torch") -> dict[str, Any]:
    """The shipped model's report, plus every candidate kept in the bundle (baselines,
    zero-shot, the network and its single-modality views) on the same data."""
    from twinlens.engine.ensemble import EnsemblePredictor, mix, present_matrix, temper_mixture
    from twinlens.engine.metrics import full_report

    predictor = EnsemblePredictor.from_bundle(bundle_dir, device=device, every_member=True, runtime=runtime)
    schema = predictor.label_schema
    _check_tasks(dataset, schema)
    _check_labels(dataset, schema)
    if modalities is not None and set(modalities) - set(predictor.modalities):
        raise TwinLensError(f"unknown modalities {sorted(set(modalities) - set(predictor.modalities))}; this model has {predictor.modalities}")
    cases = [predictor.preprocess(sample) for sample in dataset.samples]
    raw = {t.name: (0.0, 1.0) for t in schema.tasks if t.kind == "regression"}
    targets = encode_targets(dataset.samples, schema, raw, "ignore")
    truth = {k: v.numpy() for k, v in targets.values.items()}
    masks = {k: v.numpy() for k, v in targets.masks.items()}
    outputs = [member.outputs(cases, modalities) for member in predictor.members]
    shipped = predictor.weights > 0
    sees = present_matrix([m for m, used in zip(predictor.members, shipped) if used], cases, modalities)
    mixed = mix(schema, [o for o, used in zip(outputs, shipped) if used], predictor.weights[shipped], sees)
    report = full_report(schema, temper_mixture(schema, mixed, predictor.temperatures), truth, masks)
    members = {}
    for member, member_outputs, weight in zip(predictor.members, outputs, predictor.weights):
        members[member.name] = {"report": full_report(schema, member_outputs, truth, masks), "weight": float(weight),
                                "modalities": member.modalities, "kind": member.kind}
        if member.kind == "network" and len(member.modalities) > 1 and modalities is None:
            for modality in member.modalities:
                alone = full_report(schema, member.outputs(cases, [modality]), truth, masks)
                members[f"{member.name}, {modality} alone"] = {"report": alone, "weight": 0.0, "modalities": [modality], "kind": "view"}
    report.update(model_version=predictor.version, modalities=modalities or predictor.modalities,
                  shipped=predictor.config.get("shipped"), members=members)
    return report


def _check_tasks(dataset: Dataset, schema) -> None:
    unknown = set(schema.task_names) - set(dataset.label_schema.task_names)
    if unknown:
        raise TwinLensError(f"data set has no labels for task(s) {sorted(unknown)} of this model")
