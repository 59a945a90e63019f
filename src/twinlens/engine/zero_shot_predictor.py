"""The zero-shot classifier as a predictor the service's workers run, calibrated so its
confidence means what it says.

A plugin whose labels have descriptions answers jobs before any model is trained
(services/zero_shot_models.py gives such jobs a zero-shot model version). Similarity to a
description is evidence of a very different strength from head to head: on the
support_ticket generator the fault head is right 72-83% of the time, the severity head
about 42%. One fixed tempering cannot be honest for both, so each head gets a temperature
fitted by NLL (engine/calibration.py) on samples the plugin generates
(`make_sample_dataset`, labelled by construction) when the predictor is first loaded;
`benchmarks/zero_shot_calibration.py` measures the ECE it gives on a held-out generated
set. Without samples to fit on the classifier keeps its fixed tempering.

The image joins when a CLIP-style model folder is configured (ZeroShotConfig.clip_model,
TWINLENS_ZERO_SHOT_CLIP_MODEL); an aligned image-text space trained on the tenant's pairs
(engine/align.py) plugs in at the same place: `ZeroShotClassifier`'s image expert.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinlens.contract.prediction import Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import LabelSchema
from twinlens.engine.zero_shot import ZeroShotClassifier, ZeroShotConfig

_EPS = 1e-6


class ZeroShotPredictor:
    """Same interface as engine/predictor.Predictor (preprocess / predict / predict_encoded)."""

    runtime = "zero-shot"
    spec = None  # no network: nothing to embed or explain

    def __init__(self, plugin_name: str, version: str, schema: LabelSchema, text_inputs: list[str],
                 config: ZeroShotConfig | None = None, device: str | None = None):
        self.plugin_name = plugin_name
        self.version = version
        self.label_schema = schema
        self.classifier = ZeroShotClassifier(schema, text_inputs=text_inputs, config=config, device=device)

    @property
    def calibrated(self) -> bool:
        return bool(self.classifier.config.temperatures)

    def calibrate(self, samples: list[Sample]) -> dict[str, float]:
        """Fit per-head temperatures on labelled samples; from then on answers are calibrated."""
        temperatures = fit_calibration(self.classifier, samples)
        self.use_temperatures(temperatures)
        return temperatures

    def use_temperatures(self, temperatures: dict[str, float]) -> None:
        self.classifier.config = replace(self.classifier.config, temperatures=dict(temperatures), temper=0.0 if temperatures else
                                         self.classifier.config.temper)

    def preprocess(self, sample: Sample) -> Sample:
        return sample  # the classifier embeds the texts (and the image, with a CLIP model) itself

    def predict(self, samples: list[Sample], *, contributions: bool = True, batch_size: int = 32) -> list[Prediction]:
        return self.predict_encoded([self.preprocess(s) for s in samples], contributions=contributions, batch_size=batch_size)

    def predict_encoded(self, samples: list[Sample], *, contributions: bool = True, batch_size: int = 32) -> list[Prediction]:
        predictions = self.classifier.predict(samples)
        for prediction in predictions:
            prediction.model_version = self.version
            prediction.extras.setdefault("zero_shot", {})["calibration"] = (
                {"temperatures": self.classifier.config.temperatures} if self.calibrated
                else {"temper": self.classifier.config.temper, "note": "not calibrated: fixed tempering"})
        return predictions


def fit_calibration(classifier: ZeroShotClassifier, samples: list[Sample]) -> dict[str, float]:
    """One temperature per classification head, by NLL on the untempered zero-shot logits."""
    from twinlens.engine.calibration import fit_temperature
    from twinlens.engine.data import encode_targets

    schema = classifier.schema
    tasks = [task for task in schema.tasks if task.kind != "regression"]
    labelled = [s for s in samples if any(s.labels.get(task.name) is not None for task in tasks)]
    if not labelled or not tasks:
        return {}
    raw = ZeroShotClassifier(schema, text_inputs=classifier.text_inputs,
                             config=replace(classifier.config, temper=0.0, temperatures={}), device=str(classifier.device))
    raw._text, raw._clip, raw._label_vectors = classifier._text, classifier._clip, classifier._label_vectors  # share the loaded models
    predictions = raw.predict(labelled)
    scored = LabelSchema(tasks=tuple(tasks))
    targets = encode_targets(labelled, scored, {}, "ignore")
    temperatures = {}
    for task in tasks:
        probabilities = np.clip(np.array([[p.heads[task.name].probabilities[n] for n in task.label_names] for p in predictions]),
                                _EPS, 1 - _EPS)
        logits = np.log(probabilities) if task.kind == "multiclass" else np.log(probabilities / (1 - probabilities))
        temperatures[task.name] = round(fit_temperature(task, torch.tensor(logits, dtype=torch.float32),
                                                        targets.values[task.name], targets.masks[task.name]), 4)
    return temperatures


def calibration_key(plugin_name: str, plugin_version: str, schema: LabelSchema, config: ZeroShotConfig, rows: int) -> str:
    """What a fitted calibration depends on: a cache file under this name stays valid."""
    described = json.dumps({"plugin": plugin_name, "version": plugin_version, "schema": schema.model_dump(mode="json"),
                            "text_model": config.text_model, "clip_model": config.clip_model, "rows": rows,
                            "temperature": config.temperature}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def read_cached(path: Path) -> dict[str, float] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    temperatures = data.get("temperatures") if isinstance(data, dict) else None
    if not isinstance(temperatures, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in temperatures.values()):
        return None
    return {str(k): float(v) for k, v in temperatures.items()}


def write_cached(path: Path, temperatures: dict[str, float], rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps({"temperatures": temperatures, "rows": rows}))
    staged.replace(path)


def describe(predictor: Any) -> dict[str, Any]:
    return {"version": predictor.version, "calibrated": predictor.calibrated,
            "temperatures": predictor.classifier.config.temperatures}
