"""Task heads and their losses: multiclass, multilabel, regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twinlens.contract.schema import Task


class Head(nn.Module):
    def __init__(self, task: Task, dim: int, dropout: float):
        super().__init__()
        self.task = task
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, task.output_size))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        out = self.net(fused)
        return out.squeeze(-1) if self.task.kind == "regression" else out


class HeadLoss(nn.Module):
    """Loss of one head; targets the sample has no label for are masked out."""

    def __init__(self, task: Task, *, kind: str = "ce", gamma: float = 2.0, class_weight: torch.Tensor | None = None):
        super().__init__()
        self.task = task
        self.kind = kind
        self.gamma = gamma
        self.register_buffer("class_weight", class_weight if class_weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not bool(mask.any()):
            return logits.sum() * 0.0  # keeps the graph connected when a batch has no labels
        if self.task.kind == "multiclass":
            return self._multiclass(logits[mask], target[mask])
        if self.task.kind == "multilabel":
            return self._multilabel(logits, target, mask)
        return F.mse_loss(logits[mask].float(), target[mask].float())

    def _multiclass(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.kind != "focal":
            return F.cross_entropy(logits, target, weight=self.class_weight)
        log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
        focal = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.class_weight is not None:
            weight = self.class_weight[target]
            return (focal * weight).sum() / weight.sum()
        return focal.mean()

    def _multilabel(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits, weight = logits.float(), mask.float()
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=self.class_weight)
        if self.kind == "focal":
            p_true = torch.where(target > 0.5, torch.sigmoid(logits), 1 - torch.sigmoid(logits))
            loss = loss * (1 - p_true) ** self.gamma
        return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def probabilities(task: Task, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Calibrated outputs: softmax / sigmoid of logits / T; regression passes through."""
    if task.kind == "multiclass":
        return torch.softmax(logits.float() / temperature, dim=-1)
    if task.kind == "multilabel":
        return torch.sigmoid(logits.float() / temperature)
    return logits.float()
