"""Late fusion: pooled modality vectors concatenated, then an MLP."""

import torch

from twinlens.engine.fusion.base import Fusion, mlp, register_fusion


@register_fusion("concat")
class ConcatFusion(Fusion):
    def __init__(self, modalities, dim, dropout=0.1, **options):
        super().__init__(modalities, dim, dropout, **options)
        self.mix = mlp(dim * len(modalities), dim, dropout)

    def forward(self, features):
        return self.mix(torch.cat(self.pooled(features), dim=-1))
