"""The metrics report: accuracy, macro-F1, per-class P/R/F1, AUROC, ECE (and MAE/RMSE/R2).

Inputs are calibrated probabilities (numpy) and targets with masks; labels a sample does
not have are left out. AUROC is reported where both classes occur in the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from twinlens.contract.schema import LabelSchema, Task


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def _per_class(task: Task, truth: np.ndarray, predicted: np.ndarray, labels: list[int]) -> dict[str, dict[str, float]]:
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    return {
        task.labels[i].name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for i, p, r, f, s in zip(labels, precision, recall, f1, support)
    }


def multiclass_report(task: Task, probs: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    probs, truth = probs[mask], target[mask]
    if len(truth) == 0:
        return {"n": 0}
    predicted = probs.argmax(1)
    seen = sorted(set(truth.tolist()))  # macro over classes that occur in this split
    per_class = _per_class(task, truth, predicted, list(range(len(task.labels))))
    report = {
        "n": int(len(truth)),
        "accuracy": float((predicted == truth).mean()),
        "macro_f1": float(np.mean([per_class[task.labels[i].name]["f1"] for i in seen])),
        "ece": expected_calibration_error(probs.max(1), predicted == truth),
        "per_class": per_class,
    }
    report["auroc"] = _multiclass_auroc(probs, truth, len(task.labels))
    return report


def _multiclass_auroc(probs: np.ndarray, truth: np.ndarray, classes: int) -> float | None:
    scores = [roc_auc_score(truth == c, probs[:, c]) for c in range(classes) if 0 < (truth == c).sum() < len(truth)]
    return float(np.mean(scores)) if scores else None


def multilabel_report(task: Task, probs: np.ndarray, target: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    rows = mask.any(1)
    if not rows.any():
        return {"n": 0}
    predicted = probs >= threshold
    per_class, aurocs = {}, {}
    for i, label in enumerate(task.labels):
        known = mask[:, i]
        truth, guess = target[known, i] > 0.5, predicted[known, i]
        p, r, f, _ = precision_recall_fscore_support(truth, guess, average="binary", zero_division=0)
        per_class[label.name] = {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(truth.sum())}
        if 0 < truth.sum() < len(truth):
            aurocs[label.name] = float(roc_auc_score(truth, probs[known, i]))
    known = mask
    correct = (predicted == (target > 0.5))[known]
    confidence = np.where(predicted, probs, 1 - probs)[known]
    with_support = [v["f1"] for v in per_class.values() if v["support"] > 0]
    return {
        "n": int(rows.sum()),
        "accuracy": float(correct.mean()),  # label-wise (Hamming) accuracy
        "macro_f1": float(np.mean(with_support)) if with_support else 0.0,
        "auroc": float(np.mean(list(aurocs.values()))) if aurocs else None,
        "auroc_per_class": aurocs,
        "ece": expected_calibration_error(confidence, correct),
        "per_class": per_class,
    }


def regression_report(values: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    values, truth = values[mask], target[mask]
    if len(truth) == 0:
        return {"n": 0}
    error = values - truth
    variance = float(((truth - truth.mean()) ** 2).sum())
    return {
        "n": int(len(truth)),
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "r2": float(1 - (error**2).sum() / variance) if variance > 0 else None,
    }


def task_report(task: Task, outputs: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    if task.kind == "multiclass":
        return multiclass_report(task, outputs, target, mask)
    if task.kind == "multilabel":
        return multilabel_report(task, outputs, target, mask)
    return regression_report(outputs, target, mask)


def full_report(schema: LabelSchema, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, Any]:
    heads = {task.name: task_report(task, outputs[task.name], targets[task.name], masks[task.name]) for task in schema.tasks}
    return {"n": int(len(next(iter(outputs.values())))), "heads": heads, "mean": _means(heads)}


def _means(heads: dict[str, dict[str, Any]]) -> dict[str, float]:
    means = {}
    for key in ("accuracy", "macro_f1", "auroc", "ece", "r2"):
        values = [h[key] for h in heads.values() if h.get(key) is not None]
        if values:
            means[key] = float(np.mean(values))
    scores = [s for s in (head_score(h) for h in heads.values()) if s is not None]
    if scores:
        means["score"] = float(np.mean(scores))
    return means


def head_score(head: dict[str, Any]) -> float | None:
    """One number per head for choosing between models: the mean of macro-F1 (are the
    decisions right?) and AUROC (is the ranking right?) for labels; R² for regression."""
    if head.get("r2") is not None and head.get("macro_f1") is None:
        return float(head["r2"])
    values = [head[k] for k in ("macro_f1", "auroc") if head.get(k) is not None]
    return float(np.mean(values)) if values else None


def monitored_value(report: dict[str, Any], monitor: str) -> float:
    """Value of "<task>.<metric>" or "mean.<metric>"; higher is better (ECE/loss negated)."""
    scope, _, metric = monitor.partition(".")
    source = report["mean"] if scope == "mean" else report["heads"].get(scope, {})
    value = source.get(metric)
    if value is None:  # e.g. macro_f1 on a regression-only model
        value = source.get("r2") if metric != "r2" else None
    if value is None:
        return float("-inf")
    return -float(value) if metric in ("ece", "mae", "rmse", "loss") else float(value)
