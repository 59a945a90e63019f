"""The fused network as one ONNX-exportable graph, and the inputs it is fed.

The graph takes what the predictor feeds the torch model after preprocessing and returns
every head's logits:

- `pixels` float32 (batch, 3, S, S), normalised (when the model uses images);
- per text modality T: `T.input_ids` and `T.attention_mask` int64 (batch, seq_T), and with a
  lexical branch `T.lexical_ids` int64 and `T.lexical_weights` float32 (batch, ngrams_T);
- `present` bool (variants, batch, modalities): which modality each row has, once per
  *variant*. Variant 0 is normally the rows as they are; further variants mask modalities
  out (the predictor's contributions: how far the decision moves without each input).
  The encoders run once per row whatever the number of variants; only the fusion and the
  heads run once per variant, which is what the torch model does with `FusionModel.only`.

Outputs: one tensor per head, named after the task: (variants, batch, classes) logits, or
(variants, batch) for a regression head (standardised, as the torch head returns it); then
the case embeddings of variant 0 (engine/embeddings.py): `embedding.fused` and one
`embedding.<modality>` per graph modality, each (batch, hidden). Graphs exported before
these outputs existed have only the heads; their predictor gives no embeddings.

Missing modalities are handled as in `FusionModel._modality_tokens`: every row is encoded
(a missing image arrives as zero pixels, a missing text as one padding token), then a row
whose `present` is false carries only the learned missing token. Padding columns are kept
(the torch model trims them); they are masked everywhere, so the logits agree.

Torch only (no onnx import): the exporter (onnx_export.py) and the runtime
(onnx_runtime.py) both use it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from twinlens.contract.sample import Sample
from twinlens.contract.spec import ModelSpec
from twinlens.engine.fusion import ModalityTokens
from twinlens.engine.fusion.base import masked_mean

PIXELS = "pixels"
PRESENT = "present"
TEXT_KEYS = ("input_ids", "attention_mask")
LEXICAL_KEYS = ("lexical_ids", "lexical_weights")
_EXAMPLE_WORDS = "screen cracked battery error code E-4471 restart charger port water damage update the order".split()


def graph_modalities(spec: ModelSpec) -> list[str]:
    """The modalities the graph has inputs for (the `present` columns), in order."""
    return [m for m in spec.all_modalities() if m in spec.modalities]


def input_names(spec: ModelSpec) -> list[str]:
    names: list[str] = []
    for modality in graph_modalities(spec):
        if modality == "image":
            names.append(PIXELS)
            continue
        names += [f"{modality}.{key}" for key in TEXT_KEYS]
        if spec.lexical_buckets:
            names += [f"{modality}.{key}" for key in LEXICAL_KEYS]
    return [*names, PRESENT]


EMBEDDING_PREFIX = "embedding."


def output_names(model: Any) -> list[str]:
    """The heads' logits, then the case embeddings (engine/embeddings.py) of variant 0:
    `embedding.fused` and `embedding.<modality>` (pooled tokens), each (batch, hidden)."""
    return [*model.heads, *embedding_output_names(model.spec)]


def embedding_output_names(spec: ModelSpec) -> list[str]:
    return [f"{EMBEDDING_PREFIX}fused", *(f"{EMBEDDING_PREFIX}{m}" for m in graph_modalities(spec))]


def dynamic_axes(spec: ModelSpec) -> dict[str, dict[int, str]]:
    """Every input's batch (and sequence) axes, by name, for the exporter."""
    axes: dict[str, dict[int, str]] = {}
    for name in input_names(spec):
        if name == PIXELS:
            axes[name] = {0: "batch"}
        elif name == PRESENT:
            axes[name] = {0: "variants", 1: "batch"}
        else:
            modality, key = name.rsplit(".", 1)
            axes[name] = {0: "batch", 1: f"{'seq' if key in TEXT_KEYS else 'ngrams'}_{modality}"}
    return axes


class ExportableNetwork(nn.Module):
    """forward(*inputs in `input_names(spec)` order) -> one logits tensor per head."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model
        self.spec: ModelSpec = model.spec
        self.used = graph_modalities(self.spec)
        self.names = input_names(self.spec)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.names, inputs))
        present = named[PRESENT]
        variants, size = present.shape[0], present.shape[1]
        features = {}
        pooled = []
        for modality in self.spec.all_modalities():
            if modality in self.used:
                tokens, mask = self._encoded(modality, named)
                pooled.append(masked_mean(tokens, mask))
                rows = present[:, :, self.used.index(modality)]
            else:  # outside spec.modalities: always missing, as in the torch model
                tokens = self.model.missing[modality].view(1, 1, -1).expand(size, 1, -1)
                mask = torch.ones(size, 1, dtype=torch.bool, device=tokens.device)
                rows = torch.zeros(variants, size, dtype=torch.bool, device=tokens.device)
            features[modality] = self._per_variant(modality, tokens, mask, rows)
        fused = self.model.fusion(features)
        outputs = []
        for name, head in self.model.heads.items():
            logits = head(fused)
            outputs.append(logits.reshape(variants, size) if head.task.kind == "regression" else logits.reshape(variants, size, -1))
        outputs.append(fused.reshape(variants, size, -1)[0])  # the case embeddings of the rows as given
        return (*outputs, *pooled)

    def _encoded(self, modality: str, named: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        if modality == "image":
            raw = model.image_encoder(named[PIXELS])
            mask = torch.ones(raw.shape[0], raw.shape[1], dtype=torch.bool, device=raw.device)
        else:
            ids, attention = named[f"{modality}.input_ids"], named[f"{modality}.attention_mask"]
            raw = model.text_encoder(ids, attention)
            mask = attention.bool()
        projected = model.projections[modality](raw.to(model.missing[modality].dtype))
        if modality != "image" and self.spec.lexical_buckets:
            ids, weights = named[f"{modality}.lexical_ids"], named[f"{modality}.lexical_weights"]
            # EmbeddingBag(mode="sum", per_sample_weights) written out: gather, weight, sum.
            bag = (nn.functional.embedding(ids, model.lexical.weight) * weights.unsqueeze(-1)).sum(1)
            projected = projected + model.lexical_projections[modality](bag).unsqueeze(1)
        return projected, mask

    def _per_variant(self, modality: str, tokens: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> ModalityTokens:
        variants, size = rows.shape
        length, dim = tokens.shape[1], tokens.shape[2]
        first = (torch.arange(length, device=tokens.device) == 0).view(1, 1, length)
        missing = self.model.missing[modality].view(1, 1, 1, -1)
        filler = torch.where(first.unsqueeze(-1), missing, torch.zeros_like(missing))
        kept = torch.where(rows[:, :, None, None], tokens.unsqueeze(0), filler)
        # Logical ops, not a boolean Where (which onnxruntime's CPU kernels lack).
        kept_mask = (rows[:, :, None] & mask.unsqueeze(0)) | (~rows[:, :, None] & first)
        return ModalityTokens(kept.reshape(variants * size, length, dim), kept_mask.reshape(variants * size, length),
                              rows.reshape(variants * size))


# -- feeds -----------------------------------------------------------------------------------


def feeds_from_batch(spec: ModelSpec, batch: dict[str, Any], present: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs (numpy) from a collated batch (twinlens.engine.data.collate) and
    a (variants, batch, modalities) presence mask."""
    feeds: dict[str, np.ndarray] = {}
    for name in input_names(spec):
        if name == PRESENT:
            feeds[name] = np.ascontiguousarray(present, dtype=np.bool_)
        elif name == PIXELS:
            feeds[name] = _numpy(batch["inputs"]["image"]["pixels"], np.float32)
        else:
            modality, key = name.rsplit(".", 1)
            value = batch["inputs"][modality][key]
            feeds[name] = _numpy(value, np.float32 if key == "lexical_weights" else np.int64)
    return feeds


def batch_present(spec: ModelSpec, batch: dict[str, Any]) -> np.ndarray:
    """(batch, modalities): which graph modality each collated row has."""
    return np.stack([batch["present"][m].cpu().numpy() for m in graph_modalities(spec)], axis=1).astype(np.bool_)


def torch_inputs(feeds: dict[str, np.ndarray], spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in input_names(spec))


def _numpy(value: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(value.detach().cpu().numpy(), dtype=dtype)


def example_samples(spec: Any, rows: int, *, seed: int = 0, long_text: bool = False) -> list[Sample]:
    """Generated rows: random images and texts of varied length; some rows miss the image,
    some miss a text (never all of a row's inputs)."""
    from PIL import Image

    rng = random.Random(seed)
    pixels = np.random.default_rng(seed)
    size = max(spec.image_encoder.image_size, 8)
    samples = []
    for row in range(rows):
        image = Image.fromarray(pixels.integers(0, 256, (size, size, 3), dtype=np.uint8))
        # The export example's first row is long (the longest sequence); the others short.
        words = rng.randint(20, 60) if long_text and row == 0 else rng.randint(2, 10)
        texts = {name: " ".join(rng.choices(_EXAMPLE_WORDS, k=words)) for name in spec.text_inputs}
        if row % 3 == 1:
            image = None
        elif row % 3 == 2 and texts:
            texts[next(iter(texts))] = None
        samples.append(Sample(image=image, texts=texts, id=str(row)))
    return samples
