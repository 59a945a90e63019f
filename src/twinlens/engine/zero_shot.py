"""Zero-shot cold start: answers before any labelled data exists, from label descriptions.

Every label of a plugin's schema has a plain-language description. The classifier embeds
those descriptions and each of a sample's texts with the pretrained sentence encoder
(MiniLM, mean pooling, L2-normalised, as it was trained) and scores labels by cosine
similarity. Each text input is its own expert: its similarities are centred (so a text
that resembles every label equally, like a clock read off a lock screen, moves nothing)
and the experts' logits are added. When a CLIP-style image-text model is configured (a
local folder; nothing is downloaded), the image joins as one more expert, scored against
"a photo of ..." prompts built from the same descriptions.

Results are marked `zero_shot=True` and their confidence is tempered: probabilities are
mixed with the uniform distribution (`temper`), because similarity to a description is
weaker evidence than a trained model and nothing has calibrated it. Regression tasks have
no zero-shot answer (value None).

Plugin-independent: it needs a LabelSchema and the names of the text inputs, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinlens.engine.encoders import resolve_text_model  # also puts Hugging Face offline
from twinlens.contract.errors import WeightsUnavailableError
from twinlens.contract.plugin import Dataset
from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import LabelSchema, Task
from twinlens.contract.spec import DEFAULT_TEXT_ENCODER

# Multilabel: a label is predicted when its summed, centred logit clears this margin.
MULTILABEL_MARGIN = 1.0


@dataclass
class ZeroShotConfig:
    text_model: str = DEFAULT_TEXT_ENCODER  # name known to the engine, or a local folder
    clip_model: str | None = None  # local folder of a CLIP-style model; None: text only
    # Softmax temperature over cosine similarities (sentence embeddings differ by ~0.1-0.4).
    temperature: float = 0.05
    # Share of the uniform distribution mixed into every answer: the tempering.
    temper: float = 0.35
    # Per head, a temperature fitted on labelled (or generated) samples (engine/zero_shot_predictor.py
    # `fit_calibration`); a calibrated classifier needs no tempering (temper 0).
    temperatures: dict[str, float] = field(default_factory=dict)
    max_length: int = 128
    batch_size: int = 32
    image_prompt: str = "a photo of {name}: {description}"
    text_prompt: str = "{name}: {description}"


@dataclass
class _Expert:
    """One modality's centred logits for one task, per sample (None where absent)."""

    name: str
    logits: list[np.ndarray | None] = field(default_factory=list)


class ZeroShotClassifier:
    def __init__(
        self,
        label_schema: LabelSchema,
        *,
        text_inputs: list[str] | tuple[str, ...] = ("text",),
        config: ZeroShotConfig | None = None,
        device: str | None = None,
    ):
        self.schema = label_schema
        self.text_inputs = list(text_inputs)
        self.config = config or ZeroShotConfig()
        self.device = torch.device(device or "cpu")
        self._text: _TextEmbedder | None = None
        self._clip: _ClipEmbedder | None = None
        self._label_vectors: dict[tuple[str, str], np.ndarray] = {}

    @property
    def version(self) -> str:
        image = f"+{Path(self.config.clip_model).name}" if self.config.clip_model else ""
        return f"zero-shot:{Path(self.config.text_model).name}{image}"

    # -- lazy models ----------------------------------------------------------------------
    def text_embedder(self) -> "_TextEmbedder":
        if self._text is None:
            self._text = _TextEmbedder(self.config.text_model, self.config.max_length, self.device)
        return self._text

    def clip_embedder(self) -> "_ClipEmbedder | None":
        if self.config.clip_model and self._clip is None:
            self._clip = _ClipEmbedder(self.config.clip_model, self.device)
        return self._clip

    def label_prompts(self, task: Task, template: str) -> list[str]:
        return [template.format(name=label.name.replace("_", " "), description=label.description or label.name.replace("_", " "))
                for label in task.labels]

    def _labels(self, task: Task, kind: str) -> np.ndarray:
        key = (task.name, kind)
        if key not in self._label_vectors:
            if kind == "text":
                vectors = self.text_embedder().embed(self.label_prompts(task, self.config.text_prompt), self.config.batch_size)
            else:
                vectors = self.clip_embedder().embed_texts(self.label_prompts(task, self.config.image_prompt))  # type: ignore[union-attr]
            self._label_vectors[key] = vectors
        return self._label_vectors[key]

    # -- prediction -----------------------------------------------------------------------
    def predict(self, samples: list[Sample]) -> list[Prediction]:
        if not samples:
            return []
        text_vectors = {name: self._embed_texts([s.texts.get(name) for s in samples]) for name in self.text_inputs}
        image_vectors = self._embed_images(samples)
        heads_per_sample: list[dict[str, HeadPrediction]] = [{} for _ in samples]
        shares_per_sample: list[dict[str, float]] = [{} for _ in samples]
        for task in self.schema.tasks:
            experts = self._experts(task, text_vectors, image_vectors)
            for row in range(len(samples)):
                head, shares = self._head(task, experts, row)
                heads_per_sample[row][task.name] = head
                if task is self.schema.tasks[0]:
                    shares_per_sample[row] = shares  # contributions follow the first task
        return [self._prediction(sample, heads, shares) for sample, heads, shares in zip(samples, heads_per_sample, shares_per_sample)]

    def _embed_texts(self, texts: list[str | None]) -> list[np.ndarray | None]:
        rows = [i for i, text in enumerate(texts) if text is not None and text.strip()]
        vectors: list[np.ndarray | None] = [None] * len(texts)
        if rows:
            embedded = self.text_embedder().embed([texts[i] for i in rows], self.config.batch_size)  # type: ignore[misc]
            for i, vector in zip(rows, embedded):
                vectors[i] = vector
        return vectors

    def _embed_images(self, samples: list[Sample]) -> list[np.ndarray | None] | None:
        clip = self.clip_embedder()
        if clip is None:
            return None
        rows = [i for i, sample in enumerate(samples) if sample.image is not None]
        vectors: list[np.ndarray | None] = [None] * len(samples)
        if rows:
            for i, vector in zip(rows, clip.embed_images([samples[i].image for i in rows])):
                vectors[i] = vector
        return vectors

    def _experts(self, task: Task, texts: dict[str, list], images: list | None) -> list[_Expert]:
        if task.kind == "regression":
            return []
        experts = []
        labels = self._labels(task, "text")
        for name, vectors in texts.items():
            experts.append(_Expert(name, [_centred(v @ labels.T) / self.config.temperature if v is not None else None for v in vectors]))
        if images is not None:
            clip = self.clip_embedder()
            image_labels = self._labels(task, "image")
            experts.append(_Expert("image", [_centred(v @ image_labels.T) * clip.logit_scale if v is not None else None for v in images]))  # type: ignore[union-attr]
        return experts

    def _head(self, task: Task, experts: list[_Expert], row: int) -> tuple[HeadPrediction, dict[str, float]]:
        if task.kind == "regression":
            return HeadPrediction(task=task.name, kind=task.kind, value=None), {}
        present = {e.name: e.logits[row] for e in experts if e.logits[row] is not None}
        names = task.label_names
        if not present:  # nothing to compare: no answer rather than a made-up one
            uniform = {name: round(1.0 / len(names), 6) for name in names} if task.kind == "multiclass" else {name: 0.0 for name in names}
            return HeadPrediction(task=task.name, kind=task.kind, probabilities=uniform, confidence=0.0 if task.kind == "multiclass" else None), {}
        total = np.sum(list(present.values()), axis=0)
        if task.kind == "multiclass":
            head = self._multiclass(task, total)
            top = names.index(head.label)  # type: ignore[arg-type]
        else:
            head = self._multilabel(task, total)
            top = int(np.argmax(total))
        return head, _shares({name: float(logits[top]) for name, logits in present.items()})

    def _multiclass(self, task: Task, logits: np.ndarray) -> HeadPrediction:
        probs = _softmax(logits / self.config.temperatures.get(task.name, 1.0))
        probs = (1 - self.config.temper) * probs + self.config.temper / len(probs)
        table = {name: round(float(p), 6) for name, p in zip(task.label_names, probs)}
        label = task.label_names[int(np.argmax(probs))]
        return HeadPrediction(task=task.name, kind=task.kind, probabilities=table, label=label, confidence=table[label])

    def _multilabel(self, task: Task, logits: np.ndarray) -> HeadPrediction:
        probs = 1 / (1 + np.exp(-(logits - MULTILABEL_MARGIN) / self.config.temperatures.get(task.name, 1.0)))
        probs = (1 - self.config.temper) * probs + self.config.temper * 0.5
        table = {name: round(float(p), 6) for name, p in zip(task.label_names, probs)}
        return HeadPrediction(task=task.name, kind=task.kind, probabilities=table, labels=[n for n, p in table.items() if p >= 0.5])

    def _prediction(self, sample: Sample, heads: dict[str, HeadPrediction], shares: dict[str, float]) -> Prediction:
        present = [name for name in self.text_inputs if sample.has(name)]
        if self.config.clip_model and sample.image is not None:
            present = ["image", *present]
        extras = dict(sample.meta.get("extras", {}))
        extras["zero_shot"] = {"method": "similarity to label descriptions", "text_model": self.config.text_model,
                               "image_model": self.config.clip_model, "temper": self.config.temper}
        return Prediction(heads=heads, contributions=shares, inputs_present=present, model_version=self.version,
                          zero_shot=True, extras=extras)


def _centred(similarities: np.ndarray) -> np.ndarray:
    return similarities - similarities.mean()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _shares(pushes: dict[str, float]) -> dict[str, float]:
    """How much each modality pushed the chosen label up, as shares summing to 1."""
    positive = {name: max(value, 0.0) for name, value in pushes.items()}
    total = sum(positive.values())
    if total <= 1e-9:
        return {name: round(1.0 / len(pushes), 4) for name in pushes}
    return {name: round(value / total, 4) for name, value in positive.items()}


# -- encoders ---------------------------------------------------------------------------------


class _TextEmbedder:
    """Sentence embeddings: mean of the token states over the attention mask, L2-normalised."""

    def __init__(self, name: str, max_length: int, device: torch.device):
        from transformers import AutoModel, AutoTokenizer

        source = resolve_text_model(name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            self.model = AutoModel.from_pretrained(source, local_files_only=True).to(device).eval()
        except OSError as exc:
            raise WeightsUnavailableError(f"zero-shot text model {name!r} is not on this machine (never downloaded): {exc}") from exc
        self.max_length = max_length
        self.device = device

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(parts)


class _ClipEmbedder:
    """A CLIP-style dual encoder from a local folder (transformers' CLIPModel layout)."""

    def __init__(self, path: str, device: torch.device):
        from transformers import AutoProcessor, CLIPModel

        folder = Path(path)
        if not folder.is_dir():
            raise WeightsUnavailableError(f"CLIP model folder {path!r} does not exist (models are never downloaded)")
        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        except OSError as exc:
            raise WeightsUnavailableError(f"cannot load the CLIP model in {path!r}: {exc}") from exc
        self.device = device
        self.logit_scale = float(self.model.logit_scale.exp().clamp(max=100).item())

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        batch = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        features = self.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return torch.nn.functional.normalize(_as_tensor(features), dim=-1).float().cpu().numpy()

    @torch.inference_mode()
    def embed_images(self, images: list[Any]) -> np.ndarray:
        batch = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt").to(self.device)
        features = self.model.get_image_features(pixel_values=batch["pixel_values"])
        return torch.nn.functional.normalize(_as_tensor(features), dim=-1).float().cpu().numpy()


def _as_tensor(features: Any) -> torch.Tensor:
    # Newer transformers may return a model output object instead of a bare tensor.
    if isinstance(features, torch.Tensor):
        return features
    return getattr(features, "pooler_output", None) if getattr(features, "pooler_output", None) is not None else features[0]


# -- evaluation -------------------------------------------------------------------------------


def evaluate_zero_shot(classifier: ZeroShotClassifier, dataset: Dataset, *, batch_size: int = 64) -> dict[str, Any]:
    """The same report `evaluate_bundle` gives, for the zero-shot answers on `dataset`."""
    from twinlens.engine.data import encode_targets
    from twinlens.engine.metrics import full_report

    schema = classifier.schema
    predictions: list[Prediction] = []
    for start in range(0, len(dataset.samples), batch_size):
        predictions.extend(classifier.predict(dataset.samples[start:start + batch_size]))
    tasks = [task for task in schema.tasks if task.kind != "regression"]
    scored = LabelSchema(tasks=tuple(tasks))
    outputs = {task.name: np.array([[p.heads[task.name].probabilities[n] for n in task.label_names] for p in predictions])
               for task in tasks}
    targets = encode_targets(dataset.samples, scored, {}, "ignore")
    report = full_report(scored, outputs, {k: v.numpy() for k, v in targets.values.items()},
                         {k: m.numpy() for k, m in targets.masks.items()})
    report["model_version"] = classifier.version
    report["zero_shot"] = True
    return report
