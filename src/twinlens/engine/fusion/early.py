"""Early (joint) fusion: one transformer over a [CLS] token plus every modality's tokens
(each tagged with a learned modality embedding); the fused vector is the [CLS] output."""

import torch
from torch import nn

from twinlens.engine.fusion.base import Fusion, attention_block, mlp, register_fusion


@register_fusion("early")
class EarlyFusion(Fusion):
    def __init__(self, modalities, dim, dropout=0.1, heads: int = 4, layers: int = 2, **options):
        super().__init__(modalities, dim, dropout, **options)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_embedding = nn.Parameter(torch.zeros(len(modalities), dim))
        nn.init.normal_(self.modality_embedding, std=0.02)
        self.encoder = nn.TransformerEncoder(attention_block(dim, heads, dropout), layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.mix = mlp(dim, dim, dropout)

    def forward(self, features):
        batch = features[self.modalities[0]].tokens.shape[0]
        tokens = [self.cls.expand(batch, -1, -1)]
        masks = [torch.ones(batch, 1, dtype=torch.bool, device=self.cls.device)]
        for index, m in enumerate(self.modalities):
            tokens.append(features[m].tokens + self.modality_embedding[index])
            masks.append(features[m].mask)
        joint = self.encoder(torch.cat(tokens, dim=1), src_key_padding_mask=~torch.cat(masks, dim=1))
        return self.mix(self.norm(joint[:, 0]))
