"""Learned weighted sum: f = sum_m a_m * f_m with softmax weights a (for two modalities
this is f = a*f_img + (1-a)*f_txt), then an MLP. Weights start equal."""

import torch
from torch import nn

from twinlens.engine.fusion.base import Fusion, mlp, register_fusion


@register_fusion("weighted")
class WeightedSumFusion(Fusion):
    def __init__(self, modalities, dim, dropout=0.1, **options):
        super().__init__(modalities, dim, dropout, **options)
        self.project = nn.ModuleDict({m: nn.Linear(dim, dim) for m in modalities})
        self.logits = nn.Parameter(torch.zeros(len(modalities)))
        self.mix = mlp(dim, dim, dropout)

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, features):
        pooled = [self.project[m](v) for m, v in zip(self.modalities, self.pooled(features))]
        stacked = torch.stack(pooled, dim=1)  # (B, M, D)
        fused = (stacked * self.weights().view(1, -1, 1)).sum(1)
        return self.mix(fused)
