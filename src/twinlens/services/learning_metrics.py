"""The figures the gate compares, from predictions on a holdout: per multiclass task the
accuracy, macro-F1 (over classes present in the truth), per-class recall and support, the
expected calibration error (15 equal-width bins, as the engine's report), and the
latency per example (p50, p95). Plain Python on head dicts (Prediction.to_dict's)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from twinlens.contract.schema import LabelSchema

ECE_BINS = 15


def figures(schema: LabelSchema, heads: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]],
            latencies_ms: Sequence[float]) -> dict[str, Any]:
    """`heads[i]` the model's heads on example i, `truths[i]` its labels (a task may be absent)."""
    tasks = {}
    for task in schema.tasks:
        if task.kind != "multiclass":
            continue
        pairs = [(head[task.name], truth[task.name]) for head, truth in zip(heads, truths)
                 if truth.get(task.name) is not None and task.name in head]
        if pairs:
            tasks[task.name] = _multiclass(task.label_names, pairs)
    return {"n": len(truths), "tasks": tasks, "latency_ms": latency_summary(latencies_ms)}


def _multiclass(labels: Sequence[str], pairs: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    predicted = [head.get("label") for head, _ in pairs]
    truth = [label for _, label in pairs]
    support = {label: truth.count(label) for label in labels}
    recall, f1 = {}, {}
    for label in labels:
        hits = sum(1 for p, t in zip(predicted, truth) if p == t == label)
        said = sum(1 for p in predicted if p == label)
        recall[label] = hits / support[label] if support[label] else 0.0
        precision = hits / said if said else 0.0
        f1[label] = 2 * precision * recall[label] / (precision + recall[label]) if precision + recall[label] else 0.0
    present = [label for label in labels if support[label]]
    confidence = [float(head.get("confidence") or max((head.get("probabilities") or {0: 0.0}).values())) for head, _ in pairs]
    correct = [p == t for p, t in zip(predicted, truth)]
    return {
        "n": len(pairs),
        "accuracy": sum(correct) / len(pairs),
        "macro_f1": sum(f1[label] for label in present) / len(present),
        "ece": calibration_error(confidence, correct),
        "recall": recall,
        "support": support,
    }


def calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    if not confidence:
        return 0.0
    grouped: dict[int, list[tuple[float, bool]]] = {}
    for value, right in zip(confidence, correct):
        grouped.setdefault(min(int(value * bins), bins - 1), []).append((value, right))
    total = len(confidence)
    return sum(len(items) / total * abs(sum(r for _, r in items) / len(items) - sum(v for v, _ in items) / len(items))
               for items in grouped.values())


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(latencies_ms, 50), "p95": percentile(latencies_ms, 95)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])
