"""The evaluation gate: a candidate model against the champion, both measured on the same
frozen holdout version (in the manner of MLflow's MetricThreshold: an absolute floor and
a minimum gain over a baseline, per metric).

A candidate passes only if every check passes:

- primary metric (macro-F1 or accuracy of the gate task) >= the absolute floor;
- primary metric >= the champion's + the minimum delta;
- no class's recall drops by more than the tolerance against the champion;
- its expected calibration error <= the ceiling;
- its p95 latency <= the champion's times the factor.

Every check names its numbers; the report is stored whatever the verdict. Pure functions:
the figures come from ModelEvaluation rows a worker measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from twinlens.contract.errors import InputError
from twinlens.settings import Settings


@dataclass(frozen=True)
class GateThresholds:
    primary_metric: str = "macro_f1"
    task: str | None = None
    min_metric: float = 0.0
    min_delta: float = 0.0
    max_recall_drop: float = 0.05
    max_ece: float = 0.15
    max_latency_factor: float = 1.5

    @classmethod
    def from_settings(cls, settings: Settings, overrides: dict[str, Any] | None = None) -> GateThresholds:
        base = cls(primary_metric=settings.gate_primary_metric, task=settings.gate_task,
                   min_metric=settings.gate_min_metric, min_delta=settings.gate_min_delta,
                   max_recall_drop=settings.gate_max_recall_drop, max_ece=settings.gate_max_ece,
                   max_latency_factor=settings.gate_max_latency_factor)
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError("thresholds", f"unknown threshold(s) {sorted(unknown)}")
        if given.get("primary_metric", base.primary_metric) not in ("macro_f1", "accuracy"):
            raise InputError("thresholds.primary_metric", "macro_f1 or accuracy")
        return replace(base, **given)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_task(metrics: dict[str, Any], thresholds: GateThresholds) -> str | None:
    tasks = metrics.get("tasks") or {}
    if thresholds.task is not None:
        return thresholds.task if thresholds.task in tasks else None
    return next(iter(tasks), None)


def run_checks(candidate: dict[str, Any], champion: dict[str, Any] | None, thresholds: GateThresholds) -> list[Check]:
    """Every check of the gate; `champion` None when the scope has none (or it cannot be
    measured), which passes the comparisons with that said."""
    task = gate_task(candidate, thresholds)
    if task is None:
        return [Check("gate_task", False, f"the candidate has no figures for task {thresholds.task or '(any multiclass)'} "
                                           "on this holdout")]
    mine = candidate["tasks"][task]
    theirs = ((champion or {}).get("tasks") or {}).get(task)
    metric = thresholds.primary_metric
    return [
        _floor(metric, mine, thresholds),
        _delta(metric, mine, theirs, thresholds),
        *_recalls(mine, theirs, thresholds),
        _ece(mine, thresholds),
        _latency(candidate, champion, thresholds),
    ]


def _floor(metric: str, mine: dict[str, Any], thresholds: GateThresholds) -> Check:
    value = float(mine.get(metric) or 0.0)
    passed = value >= thresholds.min_metric
    return Check(f"{metric}_floor", passed,
                 f"{metric} {value:.4f} {'>=' if passed else '<'} the floor {thresholds.min_metric:.4f}",
                 value, thresholds.min_metric)


def _delta(metric: str, mine: dict[str, Any], theirs: dict[str, Any] | None, thresholds: GateThresholds) -> Check:
    value = float(mine.get(metric) or 0.0)
    if theirs is None:
        return Check(f"{metric}_vs_champion", True, "no champion measured on this holdout: nothing to beat", value)
    needed = float(theirs.get(metric) or 0.0) + thresholds.min_delta
    passed = value >= needed
    return Check(f"{metric}_vs_champion", passed,
                 f"{metric} {value:.4f} {'>=' if passed else '<'} champion {float(theirs.get(metric) or 0.0):.4f} "
                 f"+ min delta {thresholds.min_delta:.4f} = {needed:.4f}", value, needed)


def _recalls(mine: dict[str, Any], theirs: dict[str, Any] | None, thresholds: GateThresholds) -> list[Check]:
    if theirs is None:
        return [Check("class_recall", True, "no champion measured on this holdout: no recall to keep")]
    checks = []
    for label, recall in sorted((theirs.get("recall") or {}).items()):
        if (theirs.get("support") or {}).get(label, 1) == 0:
            continue  # a class absent from the holdout has no recall to lose
        candidate = float((mine.get("recall") or {}).get(label, 0.0))
        drop = float(recall) - candidate
        passed = drop <= thresholds.max_recall_drop + 1e-12
        checks.append(Check(f"recall[{label}]", passed,
                            f"recall of {label} {candidate:.4f} vs champion {float(recall):.4f}: drop {drop:.4f} "
                            f"{'<=' if passed else '>'} tolerance {thresholds.max_recall_drop:.4f}",
                            drop, thresholds.max_recall_drop))
    return checks


def _ece(mine: dict[str, Any], thresholds: GateThresholds) -> Check:
    value = float(mine.get("ece") or 0.0)
    passed = value <= thresholds.max_ece
    return Check("ece", passed, f"ECE {value:.4f} {'<=' if passed else '>'} the ceiling {thresholds.max_ece:.4f}",
                 value, thresholds.max_ece)


def _latency(candidate: dict[str, Any], champion: dict[str, Any] | None, thresholds: GateThresholds) -> Check:
    mine = float((candidate.get("latency_ms") or {}).get("p95") or 0.0)
    theirs = ((champion or {}).get("latency_ms") or {}).get("p95")
    if not theirs:
        return Check("latency_p95", True, f"p95 {mine:.2f} ms; no champion latency to compare with", mine)
    limit = float(theirs) * thresholds.max_latency_factor
    passed = mine <= limit
    return Check("latency_p95", passed,
                 f"p95 {mine:.2f} ms {'<=' if passed else '>'} champion {float(theirs):.2f} ms x "
                 f"{thresholds.max_latency_factor:g} = {limit:.2f} ms", mine, limit)


def verdict(checks: list[Check]) -> bool:
    return bool(checks) and all(check.passed for check in checks)


def failures(checks: list[Check]) -> list[str]:
    return [check.detail for check in checks if not check.passed]


def failures_of(stored: list[dict[str, Any]]) -> list[str]:
    """The failed checks' details of a stored report."""
    return [check["detail"] for check in stored if not check.get("passed")]
