"""Cross-attention: each modality's tokens attend to the other modalities' tokens (text
attends to image regions and image regions to text), then pooled and concatenated."""

import torch
from torch import nn

from twinlens.engine.fusion.base import Fusion, masked_mean, mlp, register_fusion


class _CrossBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attend = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, query, context, context_mask):
        attended, _ = self.attend(self.norm_q(query), self.norm_kv(context), self.norm_kv(context),
                                  key_padding_mask=~context_mask, need_weights=False)
        query = query + attended
        return query + self.feed_forward(self.norm_ff(query))


@register_fusion("cross_attention")
class CrossAttentionFusion(Fusion):
    def __init__(self, modalities, dim, dropout=0.1, heads: int = 4, layers: int = 1, **options):
        super().__init__(modalities, dim, dropout, **options)
        self.blocks = nn.ModuleDict({
            m: nn.ModuleList(_CrossBlock(dim, heads, dropout) for _ in range(layers)) for m in modalities
        })
        self.mix = mlp(dim * len(modalities), dim, dropout)

    def forward(self, features):
        pooled = []
        for m in self.modalities:
            others = [o for o in self.modalities if o != m]
            context = torch.cat([features[o].tokens for o in others], dim=1)
            context_mask = torch.cat([features[o].mask for o in others], dim=1)
            tokens = features[m].tokens
            for block in self.blocks[m]:
                tokens = block(tokens, context, context_mask)
            pooled.append(masked_mean(tokens, features[m].mask))
        return self.mix(torch.cat(pooled, dim=-1))
