"""Gated multimodal unit: h_m = tanh(W_m f_m); per-dimension gates z (softmax over
modalities, a sigmoid for two) computed from all inputs; f = sum_m z_m * h_m."""

import torch
from torch import nn

from twinlens.engine.fusion.base import Fusion, mlp, register_fusion


@register_fusion("gated")
class GatedFusion(Fusion):
    def __init__(self, modalities, dim, dropout=0.1, **options):
        super().__init__(modalities, dim, dropout, **options)
        self.transform = nn.ModuleDict({m: nn.Linear(dim, dim) for m in modalities})
        self.gate = nn.Linear(dim * len(modalities), dim * len(modalities))
        self.mix = mlp(dim, dim, dropout)

    def forward(self, features):
        pooled = self.pooled(features)
        hidden = torch.stack([torch.tanh(self.transform[m](v)) for m, v in zip(self.modalities, pooled)], dim=1)
        gates = self.gate(torch.cat(pooled, dim=-1)).view(hidden.shape)
        gates = torch.softmax(gates, dim=1)  # per dimension, across modalities
        return self.mix((gates * hidden).sum(1))
