"""Drift signals per model version and day: the class mix of its predictions, the
distribution of their confidence, the share marked needs_review, and the share of its
jobs reviewers corrected.

Two views of the same signals: `GET /v1/models/{id}/drift` reads them from the results and
feedback tables (days in UTC); Prometheus counts them as they happen (workers: each
prediction; the API: each correction), so a dashboard can chart them by rate().
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram
from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.repositories.learning import LearningRepository
from twinlens.services import models
from twinlens.services.keys import Principal

CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
MAX_DAYS = 90

PREDICTIONS = PromCounter("twinlens_model_predictions_total", "Predictions per model version, task and top label",
                          ["plugin", "model_version", "task", "label"])
CONFIDENCE = Histogram("twinlens_model_prediction_confidence", "Top-label confidence per model version and task",
                       ["plugin", "model_version", "task"], buckets=CONFIDENCE_BUCKETS)
NEEDS_REVIEW = PromCounter("twinlens_model_decisions_total", "Decisions per model version, by needs_review",
                           ["plugin", "model_version", "needs_review"])
CORRECTIONS = PromCounter("twinlens_model_corrections_total", "Feedback with corrected labels per model version",
                          ["plugin", "model_version"])


def observe_prediction(plugin: str, model_version: str, heads: dict[str, Any], decision: dict[str, Any]) -> None:
    """A worker's count of one written result."""
    for task, head in heads.items():
        if head.get("label") is not None:
            PREDICTIONS.labels(plugin, model_version, task, head["label"]).inc()
            if head.get("confidence") is not None:
                CONFIDENCE.labels(plugin, model_version, task).observe(float(head["confidence"]))
    NEEDS_REVIEW.labels(plugin, model_version, str(bool(decision.get("needs_review"))).lower()).inc()


def observe_correction(plugin: str, model_version: str, labels: dict[str, Any]) -> None:
    if labels:
        CORRECTIONS.labels(plugin, model_version).inc()


def daily(session: Session, principal: Principal, model_id: uuid.UUID, days: int = 14) -> dict[str, Any]:
    """The version's signals for each of the last `days` days (UTC) it had results, on the
    caller's tenant's jobs (a platform admin: every tenant's)."""
    model = models.get_model(session, principal, model_id)
    days = max(1, min(days, MAX_DAYS))
    since = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    repo = LearningRepository(session)
    rows = repo.results_since(model.id, since, None if principal.is_platform_admin else principal.tenant_id)
    corrected = repo.corrected_job_ids([job_id for job_id, _, _, _ in rows])
    by_day: dict[str, list] = {}
    for job_id, created, heads, decision in rows:
        by_day.setdefault(created.date().isoformat(), []).append((job_id, heads or {}, decision or {}))
    return {"model_id": str(model.id), "model_version": model.version, "days": [
        _day(day, items, corrected) for day, items in sorted(by_day.items())]}


def _day(day: str, items: list, corrected: set[uuid.UUID]) -> dict[str, Any]:
    classes: dict[str, Counter] = {}
    confidence: dict[str, list[float]] = {}
    for _, heads, _ in items:
        for task, head in heads.items():
            if head.get("label") is not None:
                classes.setdefault(task, Counter())[head["label"]] += 1
                if head.get("confidence") is not None:
                    confidence.setdefault(task, []).append(float(head["confidence"]))
    n = len(items)
    return {
        "day": day,
        "jobs": n,
        "class_mix": {task: {label: count / n for label, count in sorted(counter.items())} for task, counter in classes.items()},
        "confidence": {task: _distribution(values) for task, values in confidence.items()},
        "needs_review_share": sum(1 for _, _, decision in items if decision.get("needs_review")) / n,
        "correction_rate": sum(1 for job_id, _, _ in items if job_id in corrected) / n,
    }


def _distribution(values: list[float]) -> dict[str, Any]:
    """Mean and the share at or below each bucket's upper edge (as Prometheus buckets)."""
    ordered = sorted(values)
    return {"mean": sum(ordered) / len(ordered),
            "buckets": {f"{edge:g}": sum(1 for v in ordered if v <= edge) / len(ordered) for edge in CONFIDENCE_BUCKETS}}
