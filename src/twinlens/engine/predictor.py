"""Load a bundle once; predict batches with calibrated probabilities and each modality's
contribution (how much the decision moves when that modality is masked out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Task
from twinlens.engine.bundle import load_bundle
from twinlens.engine.data import EncodedSample, Preprocessor
from twinlens.engine.embeddings import EmbeddingCollector
from twinlens.engine.inference import IMAGE_SLOT, image_slot_name, infer_logits, infer_masked_logits, pick_device
from twinlens.engine.reporting import calibrated_outputs

MULTILABEL_THRESHOLD = 0.5


class EncodedPredicting:
    """What every network predictor (torch or ONNX) answers alike, on top of its own
    `outputs(encoded, modalities, batch_size)` and `outputs_masked(encoded, masked, batch_size)`:
    preprocessing, predictions with modality contributions from one encoder pass."""

    pre: Preprocessor
    label_schema: Any
    stats: dict[str, tuple[float, float]]

    def preprocess(self, sample: Sample) -> EncodedSample:
        """CPU work (resize, tokenise); safe to run on worker threads."""
        return self.pre.encode(sample)

    def predict(self, samples: list[Sample], *, contributions: bool = True, batch_size: int = 32) -> list[Prediction]:
        predictions = self.predict_encoded(self.pre.encode_many(samples), contributions=contributions, batch_size=batch_size)
        for prediction, sample in zip(predictions, samples):
            prediction.extras.update(sample_extras(sample))
        return predictions

    def predict_encoded(self, encoded: list[EncodedSample], *, contributions: bool = True, batch_size: int = 32) -> list[Prediction]:
        if not encoded:
            return []
        present = self._present(encoded)
        vectors = EmbeddingCollector()  # the case embeddings, from the same pass
        image_shares: list[dict[str, float]] = [{} for _ in encoded]
        if contributions:
            slots = image_slot_masks(encoded)
            outputs, without = self.outputs_masked(encoded, contribution_masks(self.spec.modalities, present) + slots, batch_size,
                                                   embeddings=vectors)
            by_slot = {name: without.pop(name) for name in slots}
            shares = modality_contributions(without, outputs, present, self.label_schema, self.stats)
            if by_slot:
                image_shares = image_contributions(by_slot, outputs, encoded, self.label_schema, self.stats)
        else:
            outputs, shares = self.outputs(encoded, None, batch_size, embeddings=vectors), [{} for _ in encoded]
        predictions = [self._prediction(outputs, row, present[row], shares[row]) for row in range(len(encoded))]
        for prediction, row_shares in zip(predictions, image_shares):
            prediction.image_contributions = row_shares
        for prediction, row_vectors in zip(predictions, vectors.rows):
            prediction.embeddings = row_vectors
        return predictions

    def _present(self, encoded: list[EncodedSample]) -> list[list[str]]:
        used = self.spec.modalities
        return [[m for m in used if (e.pixels is not None if m == "image" else e.tokens.get(m) is not None)] for e in encoded]

    def _prediction(self, outputs, row: int, present: list[str], shares: dict[str, float]) -> Prediction:
        heads = {task.name: _head(task, outputs[task.name][row]) for task in self.label_schema.tasks}
        return Prediction(heads=heads, contributions=shares, inputs_present=present, model_version=self.version)


class Predictor(EncodedPredicting):
    def __init__(self, model, tokenizer, config: dict[str, Any], device: torch.device):
        self.model = model.to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config = config
        self.device = device
        self.pre = Preprocessor(model.spec, tokenizer)
        self.temperatures = config.get("temperatures", {})
        self.stats = {k: tuple(v) for k, v in config.get("regression_stats", {}).items()}

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None, runtime: str = "torch") -> "Predictor":
        """A network bundle's Predictor, or the EnsemblePredictor of an ensemble bundle: both
        answer preprocess / predict / predict_encoded alike. `runtime="onnx"` runs the
        bundle's ONNX graph on onnxruntime (engine/onnx_runtime.py `OnnxPredictor`; for an
        ensemble, its network member), falling back to torch with one warning when the
        bundle has none or onnxruntime cannot run it."""
        from twinlens.contract.bundle_files import read_bundle_config

        if runtime not in ("torch", "onnx"):
            raise ValueError(f"unknown runtime {runtime!r}; choose torch or onnx")
        if read_bundle_config(path).get("kind") == "ensemble":
            from twinlens.engine.ensemble import EnsemblePredictor

            return EnsemblePredictor.from_bundle(path, device=device, runtime=runtime)  # type: ignore[return-value]
        if runtime == "onnx":
            from twinlens.engine.onnx_runtime import load_onnx_or_none

            onnx_predictor = load_onnx_or_none(path, device)
            if onnx_predictor is not None:
                return onnx_predictor  # type: ignore[return-value]
        model, tokenizer, config = load_bundle(path)
        return cls(model, tokenizer, config, pick_device(device))

    @property
    def plugin_name(self) -> str:
        return self.config["plugin"]

    @property
    def version(self) -> str:
        return self.config["version"]

    @property
    def label_schema(self):
        return self.model.label_schema

    @property
    def spec(self):
        return self.model.spec

    def outputs(self, encoded: list[EncodedSample], modalities: list[str] | None = None, batch_size: int = 32,
                embeddings: EmbeddingCollector | None = None) -> dict[str, torch.Tensor]:
        """Calibrated outputs per head (probabilities; regression values), rows in order;
        `embeddings` collects the rows' case embeddings from the same pass."""
        return self._outputs(encoded, modalities, batch_size, embeddings)

    def outputs_masked(self, encoded: list[EncodedSample], masked: list[str], batch_size: int = 32,
                       embeddings: EmbeddingCollector | None = None
                       ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        """Calibrated outputs with every input and with each of `masked` removed in turn,
        from one encoder pass (see `infer_masked_logits`)."""
        if not masked:
            return self._outputs(encoded, None, batch_size, embeddings), {}
        full, without = infer_masked_logits(self.model, self.pre, encoded, device=self.device, masked=masked, batch_size=batch_size,
                                            embeddings=embeddings)
        calibrate = lambda logits: calibrated_outputs(self.label_schema, logits, self.temperatures, self.stats)  # noqa: E731
        return calibrate(full), {m: calibrate(logits) for m, logits in without.items()}

    def _outputs(self, encoded, modalities, batch_size, embeddings=None) -> dict[str, torch.Tensor]:
        logits = infer_logits(self.model, self.pre, encoded, device=self.device, batch_size=batch_size, modalities=modalities,
                              embeddings=embeddings)
        return calibrated_outputs(self.label_schema, logits, self.temperatures, self.stats)


def contribution_masks(modalities: list[str], present: list[list[str]]) -> list[str]:
    """The modalities to mask one at a time for contributions: those some row has, when
    some row has more than one (a single present modality carries the whole decision)."""
    if not any(len(p) > 1 for p in present):
        return []
    return [m for m in modalities if any(m in p for p in present)]


def image_slot_masks(encoded: list[EncodedSample]) -> list[str]:
    """The image slots to mask one at a time: those filled in some row of two or more images."""
    several = [e.slots for e in encoded if sum(image is not None for image in e.slots) > 1]
    if not several:
        return []
    return [image_slot_name(slot) for slot in range(len(several[0])) if any(row[slot] is not None for row in several)]


def image_contributions(by_slot: dict[str, Any], full, encoded: list[EncodedSample], schema, stats) -> list[dict[str, float]]:
    """Per row of several images: each image's share of the images' part of the decision
    (how far the top answers move with that image alone left out), keyed by its name."""
    drops = {int(name[len(IMAGE_SLOT):]): decision_shift(full, masked, schema, stats) for name, masked in by_slot.items()}
    rows = []
    for row, item in enumerate(encoded):
        filled = [slot for slot, image in enumerate(item.slots) if image is not None]
        if len(filled) < 2:
            rows.append({})
            continue
        names = [item.slot_names[slot] or f"image {slot + 1}" for slot in filled]
        shares = _shares(names, {name: float(drops[slot][row]) for name, slot in zip(names, filled) if slot in drops})
        rows.append(shares)
    return rows


def modality_contributions(without: dict[str, Any], full, present: list[list[str]], schema, stats) -> list[dict[str, float]]:
    """Each present modality's share of the decision: how far the top answers move when
    that modality is masked out (`without[m]`: the outputs with `m` removed)."""
    drops = {m: decision_shift(full, masked, schema, stats) for m, masked in without.items()}
    return [_shares(row_present, {m: float(drops[m][row]) for m in drops}) for row, row_present in enumerate(present)]


def decision_shift(full: dict[str, torch.Tensor], masked: dict[str, torch.Tensor], schema, stats) -> torch.Tensor:
    shift = 0.0
    for task in schema.tasks:
        a, b = torch.as_tensor(full[task.name]), torch.as_tensor(masked[task.name])
        if task.kind == "multiclass":
            top = a.argmax(1, keepdim=True)
            shift = shift + (a.gather(1, top) - b.gather(1, top)).clamp_min(0).squeeze(1)
        elif task.kind == "multilabel":
            shift = shift + (a - b).abs().mean(1)
        else:
            std = stats.get(task.name, (0.0, 1.0))[1] or 1.0
            shift = shift + ((a - b).abs() / std).clamp(max=1.0).reshape(-1)
    return shift


def sample_extras(sample: Sample) -> dict[str, Any]:
    """What a plugin's preprocessing left for decide() and the explanation."""
    return dict(sample.meta.get("extras", {}))


def _shares(present: list[str], shifts: dict[str, float]) -> dict[str, float]:
    if len(present) == 1:
        return {present[0]: 1.0}
    raw = {m: max(shifts.get(m, 0.0), 0.0) for m in present}
    total = sum(raw.values())
    if total <= 1e-9:
        return {m: round(1.0 / len(present), 4) for m in present}
    return {m: round(v / total, 4) for m, v in raw.items()}


def head_prediction(task: Task, values) -> HeadPrediction:
    """One row of calibrated outputs (probabilities, or a regression value) as a HeadPrediction."""
    return _head(task, torch.as_tensor(values))


def _head(task: Task, values: torch.Tensor) -> HeadPrediction:
    if task.kind == "regression":
        return HeadPrediction(task=task.name, kind=task.kind, value=float(values))
    probs = {name: round(float(p), 6) for name, p in zip(task.label_names, values.tolist())}
    if task.kind == "multiclass":
        label = max(probs, key=probs.get)
        return HeadPrediction(task=task.name, kind=task.kind, probabilities=probs, label=label, confidence=probs[label])
    positives = [name for name, p in probs.items() if p >= MULTILABEL_THRESHOLD]
    return HeadPrediction(task=task.name, kind=task.kind, probabilities=probs, labels=positives)
