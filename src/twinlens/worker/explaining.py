"""The worker's explanation step: after decide(), explain the jobs the policy names
(services/explanations.py) with the loaded model (engine/explain.py).

One Explainer per model version, kept like the models themselves; an ONNX-served bundle's
explainer loads the bundle's torch network once, on its first explanation. Explaining is
best effort: a failure is logged and the job's result is written without one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from twinlens.contract.prediction import Prediction
from twinlens.services import explanations
from twinlens.services.execution import ClaimedJob
from twinlens.services.explanations import ComputedExplanation
from twinlens.services.metrics import JOB_STAGE_SECONDS
from twinlens.settings import Settings

log = logging.getLogger(__name__)
KEPT_EXPLAINERS = 4

_explainers: OrderedDict[uuid.UUID, Any] = OrderedDict()
_lock = threading.Lock()


def explain_job(settings: Settings, predictor: Any, encoded: Any, job: ClaimedJob, prediction: Prediction,
                decision: dict[str, Any]) -> ComputedExplanation | None:
    """The job's explanation when the policy asks for one, else None."""
    reason = explanations.reason_to_explain(settings.explain, job.explain, decision)
    if reason is None or encoded is None:
        return None
    started = time.perf_counter()
    try:
        explanation = _explainer(job, predictor, settings.explain_steps).explain(encoded, prediction)
        details, heatmaps = explanation.to_dict(), explanation.heatmap_pngs()
    except Exception:
        log.exception("explaining job %s failed; its result is stored without an explanation", job.id)
        return None
    seconds = time.perf_counter() - started
    JOB_STAGE_SECONDS.labels(job.plugin, "explain").observe(seconds)
    return ComputedExplanation(reason=reason, model_version=job.model_version, details=details, heatmaps=heatmaps,
                               duration_ms=int(round(seconds * 1000)))


def _explainer(job: ClaimedJob, predictor: Any, steps: int) -> Any:
    from twinlens.engine.explain import Explainer  # torch: only where models run

    with _lock:
        found = _explainers.get(job.model_version_id)
        if found is not None and found.predictor is predictor:
            _explainers.move_to_end(job.model_version_id)
            return found
        made = Explainer(predictor, None if job.bundle_path.startswith("zero-shot:") else job.bundle_path, ig_steps=steps)
        _explainers[job.model_version_id] = made
        while len(_explainers) > KEPT_EXPLAINERS:
            _explainers.popitem(last=False)
        return made


def explain_decided(settings: Settings, batch: Any, decided: list[tuple[ClaimedJob, Prediction, Any]]
                    ) -> dict[uuid.UUID, ComputedExplanation]:
    """Explanations of a batch's decided jobs (job, prediction, outcome), by job id; none
    without the batch (its predictor and encoded inputs)."""
    if batch is None:
        return {}
    found = {}
    for job, prediction, outcome in decided:
        computed = explain_job(settings, batch.predictor, batch.encoded_of(job), job, prediction, outcome.decision)
        if computed is not None:
            found[job.id] = computed
    return found
