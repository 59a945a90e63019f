"""Temperature scaling: one temperature per head, fitted on validation logits by NLL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twinlens.contract.schema import Task


def fit_temperature(task: Task, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    target, mask = target.clone(), mask.clone()
    if task.kind == "regression" or not bool(mask.any()):
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.detach().float().clone()  # may come from inference_mode

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _nll(task, logits / log_t.exp(), target, mask)
        loss.backward()
        return loss

    optimizer.step(nll)
    temperature = float(log_t.detach().exp().clamp(0.05, 20.0))
    return temperature if torch.isfinite(torch.tensor(temperature)) else 1.0


def _nll(task: Task, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if task.kind == "multiclass":
        return F.cross_entropy(logits[mask], target[mask])
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * mask.float()).sum() / mask.float().sum()
