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
    pixels: torch.Tensor | None  # uint8 (3, S, S); a multi-image model's first image
    tokens: dict[str, list[int] | None] = field(default_factory=dict)
    # Per text input: hashed n-gram (bucket ids, weights) when the model has a lexical branch.
    lexical: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # A multi-image model (spec.max_images > 1): one entry per image slot, None where the
    # case has no image in that slot. Empty for single-image models.
    slots: list[torch.Tensor | None] = field(default_factory=list)
    # What each slot's image is called in explanations: its view, or "image N" (its
    # position as sent, from 1); None for empty slots.
    slot_names: list[str | None] = field(default_factory=list)
    # The texts the token lists came from (explanations map token weights back to words).
    texts: dict[str, str | None] = field(default_factory=dict)


def assign_slots(views: list[str | None], slot_views: list[str], slots: int) -> list[int | None]:
    """The slot of each image, in order: a named view takes its slot, the others fill the
    free slots in order; an image with no free slot left gets None (it is not read).
    A view this model has no slot for counts as unnamed."""
    taken: set[int] = set()
    chosen: list[int | None] = [None] * len(views)
    for index, view in enumerate(views):
        if view in slot_views and slot_views.index(view) not in taken:
            chosen[index] = slot_views.index(view)
            taken.add(slot_views.index(view))
    free = [slot for slot in range(slots) if slot not in taken]
    for index in range(len(views)):
        if chosen[index] is None and free:
            chosen[index] = free.pop(0)
    return chosen


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
        texts = {name: sample.texts.get(name) for name in self.spec.text_inputs}
        tokens = {name: self.text(texts[name]) for name in self.spec.text_inputs}
        lexical = {}
        if self.spec.lexical_buckets:
            from twinlens.engine.lexical import hashed_ngrams

            lexical = {name: hashed_ngrams(sample.texts[name], self.spec.lexical_buckets)
                       for name in self.spec.text_inputs if tokens[name] is not None}
        if self.spec.max_images == 1:
            return EncodedSample(self.image(sample.image), tokens, lexical, texts=texts)
        slots, names = self.image_slots(sample)
        first = next((pixels for pixels in slots if pixels is not None), None)
        return EncodedSample(first, tokens, lexical, slots=slots, slot_names=names, texts=texts)

    def image_slots(self, sample: Sample) -> tuple[list[torch.Tensor | None], list[str | None]]:
        """Each slot's resized pixels (None where empty) for a multi-image model, and the
        name of the image in it (its view, or "image N" by its position as sent)."""
        images = sample.images
        views = [sample.view_of(index) for index in range(len(images))]
        slots: list[torch.Tensor | None] = [None] * self.spec.max_images
        names: list[str | None] = [None] * self.spec.max_images
        for index, slot in enumerate(assign_slots(views, self.spec.image_views, self.spec.max_images)):
            if slot is not None:
                slots[slot], names[slot] = self.image(images[index]), views[index] or f"image {index + 1}"
        return slots, names

    def encode_many(self, samples: list[Sample], threads: int = 2) -> list[EncodedSample]:
        if len(samples) < 16 or threads <= 1:
            return [self.encode(sample) for sample in samples]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.encode, samples))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() / 255.0 - self.mean) / self.std


def collate(encoded: list[EncodedSample], pre: Preprocessor, device: torch.device | str = "cpu") -> dict[str, Any]:
    spec = pre.spec
    if spec.max_images == 1:
        present = {"image": torch.tensor([e.pixels is not None for e in encoded])}
        inputs: dict[str, dict[str, torch.Tensor]] = {"image": {"pixels": _pixels(encoded, pre).to(device)}}
    else:
        image_inputs = _slot_pixels(encoded, pre)
        present = {"image": image_inputs["image_mask"].any(1)}
        inputs = {"image": {key: value.to(device) for key, value in image_inputs.items()}}
    pad_id = pre.tokenizer.pad_token_id or 0
    for name in spec.text_inputs:
        ids = [item.tokens.get(name) for item in encoded]
        present[name] = torch.tensor([t is not None for t in ids])
        inputs[name] = _pad([t or [pad_id] for t in ids], pad_id, device)
        if spec.lexical_buckets:
            inputs[name].update(_pad_lexical([item.lexical.get(name) for item in encoded], device))
    return {"present": {m: p.to(device) for m, p in present.items()}, "inputs": inputs}


def _pixels(encoded: list[EncodedSample], pre: Preprocessor) -> torch.Tensor:
    size = pre.spec.image_encoder.image_size
    pixels = torch.zeros(len(encoded), 3, size, size, dtype=torch.uint8)
    for row, item in enumerate(encoded):
        if item.pixels is not None:
            pixels[row] = item.pixels
    return pre.normalise(pixels)


def _slot_pixels(encoded: list[EncodedSample], pre: Preprocessor) -> dict[str, torch.Tensor]:
    """(B, K, 3, S, S) normalised pixels of the K image slots, and which slots hold one."""
    slots, size = pre.spec.max_images, pre.spec.image_encoder.image_size
    pixels = torch.zeros(len(encoded), slots, 3, size, size, dtype=torch.uint8)
    mask = torch.zeros(len(encoded), slots, dtype=torch.bool)
    for row, item in enumerate(encoded):
        for slot, image in enumerate(item.slots[:slots]):
            if image is not None:
                pixels[row, slot], mask[row, slot] = image, True
    normalised = pre.normalise(pixels.view(-1, 3, size, size)).view(len(encoded), slots, 3, size, size)
    return {"pixels": normalised, "image_mask": mask}


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
