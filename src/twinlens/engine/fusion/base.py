"""The fusion interface and its registry.

A strategy receives every modality as a token sequence already projected to the model
width, with a validity mask, and returns one fused vector per sample. A missing modality
arrives as its learned "missing" token (mask on that token only), so strategies need no
special case for it. Adding a strategy: one module in this package with one
`@register_fusion("name")` class; the package imports its modules automatically.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn


class ModalityTokens(NamedTuple):
    tokens: torch.Tensor  # (B, N, D)
    mask: torch.Tensor  # (B, N) bool, True where a token is real
    present: torch.Tensor  # (B,) bool, False where the modality is missing
    # The modality as one vector (B, D) when it is not the mean of its tokens: several
    # images pooled by learned attention. None: pooled fusions take the masked mean.
    pooled: torch.Tensor | None = None


def pooled_vector(features: ModalityTokens) -> torch.Tensor:
    """One vector per row: the modality's own pooling if it has one, else the masked mean."""
    return features.pooled if features.pooled is not None else masked_mean(features.tokens, features.mask)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class Fusion(nn.Module):
    """Base class: subclasses implement `forward(features) -> (B, dim)`."""

    def __init__(self, modalities: list[str], dim: int, dropout: float = 0.1, **options: Any):
        super().__init__()
        if options:
            raise ValueError(f"{type(self).__name__} got unknown options {sorted(options)}")
        self.modalities = list(modalities)
        self.dim = dim
        self.dropout = dropout

    def forward(self, features: dict[str, ModalityTokens]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def pooled(self, features: dict[str, ModalityTokens]) -> list[torch.Tensor]:
        return [pooled_vector(features[m]) for m in self.modalities]


FUSIONS: dict[str, type[Fusion]] = {}


def register_fusion(name: str):
    def register(cls: type[Fusion]) -> type[Fusion]:
        if name in FUSIONS and FUSIONS[name] is not cls:
            raise ValueError(f"fusion strategy {name!r} registered twice")
        FUSIONS[name] = cls
        cls.fusion_name = name
        return cls

    return register


def build_fusion(name: str, modalities: list[str], dim: int, dropout: float, options: dict[str, Any]) -> Fusion:
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion strategy {name!r}; known: {', '.join(sorted(FUSIONS))}")
    return FUSIONS[name](modalities, dim, dropout=dropout, **options)


def mlp(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout))


def attention_block(dim: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
    )
