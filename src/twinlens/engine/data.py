"""Samples -> tensors: image resizing, tokenisation, targets with masks, batching.

Images and texts are turned into compact tensors once (uint8 pixels, token id lists), so
training epochs do not decode, resize or tokenise again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from twinlens.contract.sample import Sample
from twinlens.contract.schema import LabelSchema, Task
from twinlens.contract.spec import ModelSpec


@dataclass
class EncodedSample:
    pixels: torch.Tensor | None  # uint8 (3, S, S)
    tokens: dict[str, list[int] | None] = field(default_factory=dict)
    # Per text input: hashed n-gram (bucket ids, weights) when the model has a lexical branch.
    lexical: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class Preprocessor:
    """Image resize + tokenisation for one model spec. Thread-safe (fast tokenizers)."""

    def __init__(self, spec: ModelSpec, tokenizer: Any):
        self.spec = spec
        self.tokenizer = tokenizer
        self.size = spec.image_encoder.image_size
        self.mean = torch.tensor(spec.image_encoder.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.image_encoder.std).view(1, 3, 1, 1)

    def image(self, image: Image.Image | None) -> torch.Tensor | None:
        if image is None:
            return None
        if self.spec.image_encoder.grayscale:
            image = image.convert("L")
        image = image.convert("RGB")
        if image.size != (self.size, self.size):
            # draft() already shrank JPEGs at decode; reducing_gap keeps big resizes cheap.
            image = image.resize((self.size, self.size), Image.BILINEAR, reducing_gap=2.0)
        array = np.asarray(image, dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1)

    def text(self, text: str | None) -> list[int] | None:
        if text is None or not text.strip():
            return None
        encoded = self.tokenizer(text, truncation=True, max_length=self.spec.text_encoder.max_length)
        return list(encoded["input_ids"])

    def encode(self, sample: Sample) -> EncodedSample:
        tokens = {name: self.text(sample.texts.get(name)) for name in self.spec.text_inputs}
        lexical = {}
        if self.spec.lexical_buckets:
            from twinlens.engine.lexical import hashed_ngrams

            lexical = {name: hashed_ngrams(sample.texts[name], self.spec.lexical_buckets)
                       for name in self.spec.text_inputs if tokens[name] is not None}
        return EncodedSample(self.image(sample.image), tokens, lexical)

    def encode_many(self, samples: list[Sample], threads: int = 2) -> list[EncodedSample]:
        if len(samples) < 16 or threads <= 1:
            return [self.encode(sample) for sample in samples]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.encode, samples))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() / 255.0 - self.mean) / self.std


def collate(encoded: list[EncodedSample], pre: Preprocessor, device: torch.device | str = "cpu") -> dict[str, Any]:
    spec = pre.spec
    present = {"image": torch.tensor([e.pixels is not None for e in encoded])}
    size = spec.image_encoder.image_size
    pixels = torch.zeros(len(encoded), 3, size, size, dtype=torch.uint8)
    for row, item in enumerate(encoded):
        if item.pixels is not None:
            pixels[row] = item.pixels
    inputs: dict[str, dict[str, torch.Tensor]] = {"image": {"pixels": pre.normalise(pixels).to(device)}}
    pad_id = pre.tokenizer.pad_token_id or 0
    for name in spec.text_inputs:
        ids = [item.tokens.get(name) for item in encoded]
        present[name] = torch.tensor([t is not None for t in ids])
        inputs[name] = _pad([t or [pad_id] for t in ids], pad_id, device)
        if spec.lexical_buckets:
            inputs[name].update(_pad_lexical([item.lexical.get(name) for item in encoded], device))
    return {"present": {m: p.to(device) for m, p in present.items()}, "inputs": inputs}


def _pad(sequences: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _pad_lexical(rows: list[tuple[np.ndarray, np.ndarray] | None], device) -> dict[str, torch.Tensor]:
    """Bucket ids and weights padded to one width (padding: bucket 0 with weight 0)."""
    width = max([len(r[0]) for r in rows if r is not None] + [1])
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    weights = torch.zeros((len(rows), width), dtype=torch.float32)
    for row, item in enumerate(rows):
        if item is not None and len(item[0]):
            ids[row, : len(item[0])] = torch.from_numpy(item[0])
            weights[row, : len(item[1])] = torch.from_numpy(item[1])
    return {"lexical_ids": ids.to(device), "lexical_weights": weights.to(device)}


def batches(count: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    for start in range(0, count, batch_size):
        yield order[start : start + batch_size]


# -- targets -------------------------------------------------------------------------------


@dataclass
class Targets:
    """Per task: target tensor and a mask of which entries are labelled."""

    values: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    def select(self, rows: torch.Tensor, device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return ({k: v[rows].to(device) for k, v in self.values.items()}, {k: m[rows].to(device) for k, m in self.masks.items()})


def regression_stats(samples: list[Sample], schema: LabelSchema) -> dict[str, tuple[float, float]]:
    """Mean and std of each regression target, so heads learn standardised values."""
    stats = {}
    for task in schema.tasks:
        if task.kind == "regression":
            values = np.array([float(s.labels[task.name]) for s in samples if s.labels.get(task.name) is not None])
            stats[task.name] = (float(values.mean()) if len(values) else 0.0, float(values.std()) or 1.0 if len(values) else 1.0)
    return stats


def encode_targets(samples: list[Sample], schema: LabelSchema, stats: dict[str, tuple[float, float]], uncertain_policy: str = "ignore") -> Targets:
    values, masks = {}, {}
    for task in schema.tasks:
        values[task.name], masks[task.name] = _encode_task(samples, task, stats.get(task.name), uncertain_policy)
    return Targets(values, masks)


def _encode_task(samples: list[Sample], task: Task, stats, policy: str) -> tuple[torch.Tensor, torch.Tensor]:
    count = len(samples)
    if task.kind == "multiclass":
        index = {name: i for i, name in enumerate(task.label_names)}
        target = torch.tensor([index[s.labels[task.name]] if s.labels.get(task.name) is not None else -100 for s in samples])
        return target, target >= 0
    if task.kind == "regression":
        mean, std = stats
        raw = [s.labels.get(task.name) for s in samples]
        target = torch.tensor([(float(v) - mean) / std if v is not None else 0.0 for v in raw])
        return target, torch.tensor([v is not None for v in raw])
    index = {name: i for i, name in enumerate(task.label_names)}
    target = torch.zeros(count, len(index))
    mask = torch.zeros(count, len(index), dtype=torch.bool)
    for row, sample in enumerate(samples):
        positives = sample.labels.get(task.name)
        if positives is None:
            continue
        mask[row] = True
        for name in positives:
            target[row, index[name]] = 1.0
        for name in sample.meta.get("uncertain", {}).get(task.name, []):
            _apply_uncertain(target, mask, row, index[name], policy)
    return target, mask


def _apply_uncertain(target, mask, row: int, column: int, policy: str) -> None:
    if policy == "ignore":
        mask[row, column] = False
    else:
        target[row, column] = 1.0 if policy == "positive" else 0.0
