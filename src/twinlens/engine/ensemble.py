"""Ensembles: several calibrated members behind one prediction interface and one version.

A member is a fused network (a nested network bundle), a linear model on TF-IDF n-grams
and/or classical image features, or the zero-shot classifier. The ensemble averages the
members' calibrated outputs with weights chosen on validation; per sample, a member that
sees none of its modalities steps aside and the others' weights are renormalised. A final
temperature per head recalibrates the mixture, so `needs_review` thresholds keep meaning
what they say.

On disk (see `save_ensemble`): `config.json` with `kind: "ensemble"`, the members, their
weights and temperatures; `network/` (a network bundle); `linear.safetensors` (every
coefficient, IDF and scaling array); `linear/<member>.json` (vocabularies). Sealed by
the same content hash as any bundle; nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinlens.contract.bundle_files import CONFIG_NAME, read_bundle_config, seal_config, staged_bundle_folder
from twinlens.engine.classical import image_features
from twinlens.engine.embeddings import EmbeddingCollector, label_space_rows
from twinlens.engine.data import EncodedSample
from twinlens.engine.linear import LinearHeads, Standardiser, TfidfText
from twinlens.contract.prediction import Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import LabelSchema, Task

NETWORK_DIR = "network"
LINEAR_WEIGHTS = "linear.safetensors"
LINEAR_DIR = "linear"
_EPS = 1e-7


@dataclass
class CaseInputs:
    """One sample as every member needs it; built once per job on the worker's threads."""

    network: EncodedSample | None
    texts: dict[str, str | None]
    image_features: np.ndarray | None

    def has(self, modality: str) -> bool:
        if modality == "image":
            return self.image_features is not None
        text = self.texts.get(modality)
        return text is not None and text.strip() != ""


def calibrate(task: Task, values: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (or regression values) tempered by `temperature`."""
    if task.kind == "regression":
        return values.reshape(len(values))  # one value per row, as the network's head gives it
    if task.kind == "multiclass":
        scaled = values / temperature
        scaled = scaled - scaled.max(1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-values / temperature))


def logits_of(task: Task, probabilities: np.ndarray) -> np.ndarray:
    """Inverse of `calibrate` at temperature 1 (log-probabilities; logits for multilabel)."""
    if task.kind == "regression":
        return probabilities
    p = np.clip(probabilities, _EPS, 1 - _EPS)
    return np.log(p) if task.kind == "multiclass" else np.log(p / (1 - p))


# -- members -----------------------------------------------------------------------------------


class Member:
    name: str
    kind: str
    modalities: list[str]

    def outputs(self, cases: list[CaseInputs], keep: list[str] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def outputs_masked(self, cases: list[CaseInputs], masked: list[str]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        """Outputs with every input and with each of `masked` removed in turn; a member that
        does not use a modality answers the same without it, so it is not asked again."""
        full = self.outputs(cases)
        return full, {m: self.outputs(cases, [o for o in self.modalities if o != m]) if m in self.modalities else full
                      for m in masked}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "modalities": self.modalities}


class LinearMember(Member):
    """A linear model per head on TF-IDF of some text fields and/or classical image features."""

    kind = "linear"

    def __init__(self, name: str, schema: LabelSchema, texts: dict[str, TfidfText], image: Standardiser | None,
                 heads: LinearHeads, temperatures: dict[str, float] | None = None):
        self.name, self.schema, self.texts, self.image, self.heads = name, schema, texts, image, heads
        self.temperatures = temperatures or {}
        self.modalities = [*(["image"] if image is not None else []), *texts]

    def features(self, cases: list[CaseInputs], keep: list[str] | None = None):
        from scipy import sparse

        blocks = []
        for field, vectorizer in self.texts.items():
            used = keep is None or field in keep
            blocks.append(vectorizer.transform([c.texts.get(field) if used else None for c in cases]))
        if self.image is not None:
            used = keep is None or "image" in keep
            present = np.array([used and c.image_features is not None for c in cases])
            raw = np.stack([c.image_features if c.image_features is not None else np.zeros_like(self.image.mean) for c in cases])
            blocks.append(sparse.csr_matrix(self.image.transform(raw, present)))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    def raw_scores(self, cases: list[CaseInputs], keep: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.heads.scores(self.features(cases, keep))

    def outputs(self, cases, keep=None):
        scores = self.raw_scores(cases, keep)
        return {t.name: calibrate(t, scores[t.name], self.temperatures.get(t.name, 1.0)) for t in self.schema.tasks}

    def save(self, root: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        vocab: dict[str, Any] = {}
        for field, vectorizer in self.texts.items():
            meta, field_arrays = vectorizer.state(f"{self.name}.text.{field}")
            vocab[field] = meta
            arrays.update(field_arrays)
        if self.image is not None:
            arrays[f"{self.name}.image.mean"], arrays[f"{self.name}.image.scale"] = self.image.mean, self.image.scale
        heads_meta, head_arrays = self.heads.state(f"{self.name}.heads")
        arrays.update(head_arrays)
        vocab_file = f"{LINEAR_DIR}/{self.name}.json"
        (root / LINEAR_DIR).mkdir(exist_ok=True)
        (root / vocab_file).write_text(json.dumps(vocab))
        return {**self.describe(), "text_fields": list(self.texts), "image": self.image is not None,
                "vocabulary_file": vocab_file, "heads": heads_meta, "temperatures": self.temperatures}

    @classmethod
    def load(cls, root: Path, meta: dict[str, Any], schema: LabelSchema, arrays: dict[str, np.ndarray]) -> "LinearMember":
        name = meta["name"]
        vocab = json.loads((root / meta["vocabulary_file"]).read_text())
        texts = {field: TfidfText.from_state(vocab[field], arrays, f"{name}.text.{field}") for field in meta["text_fields"]}
        image = Standardiser(arrays[f"{name}.image.mean"], arrays[f"{name}.image.scale"]) if meta["image"] else None
        heads = LinearHeads.from_state(schema, meta["heads"], arrays, f"{name}.heads")
        return cls(name, schema, texts, image, heads, meta.get("temperatures"))


class NetworkMember(Member):
    """A fused network (twinlens.engine.predictor.Predictor over a nested bundle)."""

    kind = "network"

    def __init__(self, name: str, predictor: Any):
        self.name, self.predictor = name, predictor
        self.modalities = list(predictor.spec.modalities)

    def outputs(self, cases, keep=None):
        encoded = [c.network for c in cases]
        modalities = None if keep is None else [m for m in self.modalities if m in keep]
        if modalities == []:
            modalities = ["__none__"]  # every modality masked: the learned missing tokens answer
        return {name: values.numpy() for name, values in self.predictor.outputs(encoded, modalities).items()}

    def outputs_masked(self, cases, masked, embeddings=None):
        full, without = self.predictor.outputs_masked([c.network for c in cases], [m for m in masked if m in self.modalities],
                                                      embeddings=embeddings)
        as_numpy = lambda outputs: {name: values.numpy() for name, values in outputs.items()}  # noqa: E731
        full = as_numpy(full)
        return full, {m: as_numpy(without[m]) if m in without else full for m in masked}


class ZeroShotMember(Member):
    """The cold-start classifier (label descriptions vs. texts) as one more member."""

    kind = "zero_shot"

    def __init__(self, name: str, schema: LabelSchema, text_inputs: list[str], device: str | None = None):
        from twinlens.engine.zero_shot import ZeroShotClassifier

        self.name, self.schema = name, schema
        self.modalities = list(text_inputs)
        self.classifier = ZeroShotClassifier(schema, text_inputs=text_inputs, device=device)

    def outputs(self, cases, keep=None):
        samples = [Sample(texts={f: (c.texts.get(f) if keep is None or f in keep else None) for f in self.modalities}) for c in cases]
        has_text = [any(s.has(f) for f in self.modalities) for s in samples]
        answered = self.classifier.predict([s for s, ok in zip(samples, has_text) if ok]) if any(has_text) else []
        out = {t.name: np.full((len(cases), t.output_size), 1.0 / t.output_size if t.kind == "multiclass" else 0.5, dtype=np.float32)
               for t in self.schema.tasks}
        rows = [i for i, ok in enumerate(has_text) if ok]
        for row, prediction in zip(rows, answered):
            for task in self.schema.tasks:
                probabilities = prediction.heads[task.name].probabilities
                out[task.name][row] = [probabilities[label] for label in task.label_names]
        return out


# -- combination ---------------------------------------------------------------------------------


def present_matrix(members: list[Member], cases: list[CaseInputs], keep: list[str] | None = None) -> np.ndarray:
    """(cases, members): does the member see at least one of its modalities in this case?"""
    modalities = sorted({m for member in members for m in member.modalities if keep is None or m in keep})
    has = np.array([[c.has(m) for m in modalities] for c in cases], dtype=bool).reshape(len(cases), len(modalities))
    columns = [[modalities.index(m) for m in member.modalities if m in modalities] for member in members]
    return np.stack([has[:, cols].any(1) if cols else np.zeros(len(cases), dtype=bool) for cols in columns], axis=1)


def mix(schema: LabelSchema, member_outputs: list[dict[str, np.ndarray]], weights: np.ndarray, sees: np.ndarray,
        answers: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Weighted mean of members' outputs per case, over the members that see the case.

    `answers` (cases, members) marks the members that have an output for a case at all;
    training passes it because some members are scored on part of the rows only. Serving
    leaves it out: every member answers every case."""
    per_case = sees * weights[None, :]
    # A case no weighted member sees (e.g. an ensemble of text models and a photo-only
    # case): fall back to every weighted member, which then answer from their priors.
    empty = per_case.sum(1) <= 0
    per_case[empty] = (weights[None, :] if answers is None else answers[empty] * weights[None, :])
    per_case = per_case / per_case.sum(1, keepdims=True)
    mixed = {}
    for task in schema.tasks:
        stacked = np.stack([out[task.name] for out in member_outputs], axis=1)  # (cases, members[, width])
        weights = per_case if stacked.ndim == 2 else per_case[:, :, None]  # regression: one value per case
        mixed[task.name] = (stacked * weights).sum(1)
    return mixed


def temper_mixture(schema: LabelSchema, mixed: dict[str, np.ndarray], temperatures: dict[str, float]) -> dict[str, np.ndarray]:
    return {t.name: calibrate(t, logits_of(t, mixed[t.name]), temperatures.get(t.name, 1.0)) if t.kind != "regression" else mixed[t.name]
            for t in schema.tasks}


# -- the predictor -------------------------------------------------------------------------------


class EnsemblePredictor:
    """Same interface as twinlens.engine.predictor.Predictor, over an ensemble bundle."""

    def __init__(self, members: list[Member], weights: np.ndarray, config: dict[str, Any], network_predictor: Any | None):
        self.members, self.weights, self.config = members, weights, config
        self.network = network_predictor
        self.label_schema = LabelSchema.model_validate(config["label_schema"])
        self.temperatures = config.get("ensemble_temperatures", {})
        self.stats = {k: tuple(v) for k, v in config.get("regression_stats", {}).items()}
        self.modalities = [m for m in config["modalities"]]


    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None, *, every_member: bool = False,
                    runtime: str = "torch") -> "EnsemblePredictor":
        """Loads the members that ship (weight > 0); `every_member` also loads the
        candidates kept for comparison (evaluation). `runtime="onnx"`: the network member
        runs its ONNX graph (see Predictor.from_bundle)."""
        root = Path(path)
        config = read_bundle_config(root)
        schema = LabelSchema.model_validate(config["label_schema"])
        arrays = _load_arrays(root / LINEAR_WEIGHTS) if (root / LINEAR_WEIGHTS).is_file() else {}
        members: list[Member] = []
        network = None
        chosen = [m for m in config["members"] if every_member or m["weight"] > 0]
        for meta in chosen:
            if meta["kind"] == "network":
                from twinlens.engine.predictor import Predictor

                network = Predictor.from_bundle(root / meta["path"], device=device, runtime=runtime)
                members.append(NetworkMember(meta["name"], network))
            elif meta["kind"] == "linear":
                members.append(LinearMember.load(root, meta, schema, arrays))
            else:
                members.append(ZeroShotMember(meta["name"], schema, meta["modalities"], device=device))
        weights = np.array([m["weight"] for m in chosen], dtype=np.float64)
        return cls(members, weights, config, network)

    plugin_name = property(lambda self: self.config["plugin"])
    version = property(lambda self: self.config["version"])

    @property
    def spec(self):
        """The network member's spec when there is one (what encoders it runs)."""
        return self.network.spec if self.network is not None else None

    def preprocess(self, sample: Sample) -> CaseInputs:
        network = self.network.preprocess(sample) if self.network is not None else None
        # Classical features also mark the image as present for the mixture (2 ms a photo).
        features = image_features(sample.image) if "image" in self.modalities and sample.image is not None else None
        return CaseInputs(network, dict(sample.texts), features)

    def outputs(self, cases: list[CaseInputs], modalities: list[str] | None = None) -> dict[str, np.ndarray]:
        """Calibrated ensemble outputs per head; `modalities` keeps only those inputs."""
        return self._mixture(cases, [m.outputs(cases, modalities) for m in self.members], modalities)

    def _mixture(self, cases: list[CaseInputs], member_outputs: list[dict[str, np.ndarray]], keep: list[str] | None) -> dict[str, np.ndarray]:
        mixed = mix(self.label_schema, member_outputs, self.weights, present_matrix(self.members, cases, keep))
        return temper_mixture(self.label_schema, mixed, self.temperatures)

    def _outputs_masked(self, cases: list[CaseInputs], masked: list[str], embeddings: Any = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        """The mixture with every input and with each of `masked` removed, each member asked
        once (the network member runs its encoders once for all of them, and gives the case
        embeddings to `embeddings` from that pass)."""
        answers = [m.outputs_masked(cases, masked, embeddings=embeddings) if isinstance(m, NetworkMember) else m.outputs_masked(cases, masked)
                   for m in self.members]
        full = self._mixture(cases, [a[0] for a in answers], None)
        return full, {m: self._mixture(cases, [a[1][m] for a in answers], [o for o in self.modalities if o != m]) for m in masked}

    def predict(self, samples: list[Sample], *, contributions: bool = True, batch_size: int = 32) -> list[Prediction]:
        from twinlens.engine.predictor import sample_extras

        predictions = self.predict_encoded([self.preprocess(s) for s in samples], contributions=contributions)
        for prediction, sample in zip(predictions, samples):
            prediction.extras.update(sample_extras(sample))
        return predictions

    def predict_encoded(self, cases: list[CaseInputs], *, contributions: bool = True, batch_size: int = 32) -> list[Prediction]:
        from twinlens.engine.predictor import contribution_masks, head_prediction, modality_contributions

        if not cases:
            return []
        present = [[m for m in self.modalities if c.has(m)] for c in cases]
        masked = contribution_masks(self.modalities, present) if contributions else []
        vectors = EmbeddingCollector()
        full, without = self._outputs_masked(cases, masked, vectors if self.network is not None else None)
        shares = (modality_contributions(without, full, present, self.label_schema, self.stats)
                  if contributions else [{} for _ in cases])
        predictions = [Prediction(heads={t.name: head_prediction(t, full[t.name][row]) for t in self.label_schema.tasks},
                                  contributions=shares[row], inputs_present=present[row], model_version=self.version)
                       for row in range(len(cases))]
        for prediction, row_vectors in zip(predictions, vectors.rows if self.network is not None else self._feature_rows(cases, full)):
            prediction.embeddings = row_vectors
        return predictions

    def _feature_rows(self, cases: list[CaseInputs], full: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Without a network member: the mixture's outputs as the fused vector, and the
        classical image features as the image's (TF-IDF vectors are too wide to keep)."""
        rows = label_space_rows(full, self.label_schema)
        for row, case in zip(rows, cases):
            if case.image_features is not None:
                row["image"] = np.asarray(case.image_features, dtype=np.float32)
        return rows


# -- saving --------------------------------------------------------------------------------------


def save_ensemble(out_dir: Path, *, members: list[Member], weights: list[float], network_saver: Any | None,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """Write an ensemble bundle into a temporary sibling, then move it into place.

    `network_saver(folder)` writes the network member's bundle (twinlens.engine.bundle).
    """
    from safetensors.numpy import save_file

    with staged_bundle_folder(Path(out_dir)) as staging:
        arrays: dict[str, np.ndarray] = {}
        described = []
        for member, weight in zip(members, weights):
            if isinstance(member, LinearMember):
                meta = member.save(staging, arrays)
            elif isinstance(member, NetworkMember):
                network_saver(staging / NETWORK_DIR)
                meta = {**member.describe(), "path": NETWORK_DIR}
            else:
                meta = member.describe()
            described.append({**meta, "weight": float(weight)})
        if arrays:
            save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}, str(staging / LINEAR_WEIGHTS))
        config = seal_config(staging, {**extra, "kind": "ensemble", "members": described,
                                       "versions": _versions(), "created_at": datetime.now(timezone.utc).isoformat()})
    return config


def _versions() -> dict[str, str]:
    from twinlens.engine.bundle import package_versions

    return {**package_versions(), **_library_versions()}


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("scikit-learn", "scipy", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


__all__ = ["CaseInputs", "EnsemblePredictor", "LinearMember", "NetworkMember", "ZeroShotMember", "save_ensemble", "mix",
           "present_matrix", "temper_mixture", "calibrate", "logits_of", "CONFIG_NAME"]
