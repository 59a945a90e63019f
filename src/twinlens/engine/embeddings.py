"""Case embeddings from the pass that predicts: the fused vector (what the heads read) and
one vector per modality (its projected tokens, pooled), per row.

Similar-case search and the image-text space (engine/align.py) read these. They come
out of the very forward pass whose logits become the prediction, so a stored embedding
always belongs to the model version and the inputs that gave the result.

Kinds: "fused", and each modality's name ("image", or a text input such as "text",
"ocr"): its projected tokens pooled as the fusion pools them (the mean, or the learned
attention over several images). A modality missing from a row has no vector (its learned "missing" token would
make every such case look alike).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twinlens.engine.fusion.base import ModalityTokens, pooled_vector

FUSED = "fused"
RowEmbeddings = dict[str, np.ndarray]


class EmbeddingCollector:
    """Collects each batch's embeddings, rows in order (pass one to the inference helpers)."""

    def __init__(self) -> None:
        self.rows: list[RowEmbeddings] = []

    def add(self, fused: torch.Tensor, features: dict[str, ModalityTokens], modalities: list[str]) -> None:
        # A modality's own pooling where it has one (several images: learned attention), else the mean.
        pooled = {m: pooled_vector(features[m]).float().cpu().numpy() for m in modalities}
        present = {m: features[m].present.cpu().numpy() for m in modalities}
        self.add_arrays(fused.float().cpu().numpy(), pooled, present)

    def add_arrays(self, fused: np.ndarray, pooled: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
        for row in range(fused.shape[0]):
            vectors = {FUSED: np.asarray(fused[row], dtype=np.float32)}
            vectors.update({m: np.asarray(values[row], dtype=np.float32) for m, values in pooled.items() if present[m][row]})
            self.rows.append(vectors)


def heads_and_fused(model: Any, features: dict[str, ModalityTokens]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The heads' logits and the fused vector they read, from one fusion run."""
    fused = model.fusion(features)
    return {name: head(fused) for name, head in model.heads.items()}, fused


def as_lists(rows: list[RowEmbeddings]) -> list[dict[str, list[float]]]:
    return [{kind: vector.tolist() for kind, vector in row.items()} for row in rows]


def label_space_rows(outputs: dict[str, np.ndarray], schema: Any) -> list[RowEmbeddings]:
    """For an ensemble without a network: the calibrated outputs of every head side by
    side, one "fused" vector per row (cases the ensemble answers alike are neighbours)."""
    parts = [np.asarray(outputs[t.name], dtype=np.float32).reshape(len(next(iter(outputs.values()))), -1) for t in schema.tasks]
    joined = np.concatenate(parts, axis=1)
    return [{FUSED: joined[row]} for row in range(joined.shape[0])]
