"""Shadow mode: a challenger runs on a share of its scope's live jobs after the champion's
result is written. Its outputs go to `shadow_results` only: job answers and webhooks are
built from `results` (services/views.py) and never read this table.

Which jobs are shadowed is a fixed function of the job and challenger ids, so a
redelivered job is shadowed (or not) again the same way and stored once.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from twinlens.db.learning_tables import ShadowResult
from twinlens.db.models import ModelVersion
from twinlens.db.repositories import ModelRepository
from twinlens.db.repositories.learning import LearningRepository, scope_key
from twinlens.services import models
from twinlens.services.keys import Principal
from twinlens.services.learning_metrics import latency_summary


@dataclass(frozen=True)
class ShadowTask:
    job_id: uuid.UUID
    challenger_id: uuid.UUID
    challenger_version: str
    bundle_path: str
    champion_id: uuid.UUID


def selected(job_id: uuid.UUID, challenger_id: uuid.UUID, share: float) -> bool:
    digest = hashlib.sha256(f"shadow:{challenger_id}:{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def plan(session: Session, job_ids: list[uuid.UUID]) -> list[ShadowTask]:
    """The shadow runs these just-finished jobs get: a job is shadowed by the challenger
    of its tenant's scope, else of the global scope, when its own model is that scope's
    champion and the job falls in the challenger's share."""
    repo = LearningRepository(session)
    jobs = repo.jobs_with_tenant(job_ids)
    wanted = {(scope_key(tenant), plugin) for _, tenant, plugin, _ in jobs} | {("global", plugin) for _, _, plugin, _ in jobs}
    challengers = repo.challengers(wanted)
    if not challengers:
        return []
    model_repo = ModelRepository(session)
    tasks = []
    for job_id, tenant_id, plugin, model_id in jobs:
        alias = challengers.get((scope_key(tenant_id), plugin)) or challengers.get(("global", plugin))
        if alias is None or alias.model_version_id == model_id or not selected(job_id, alias.model_version_id, alias.shadow_share):
            continue
        challenger = model_repo.get(alias.model_version_id)
        if challenger is not None:
            tasks.append(ShadowTask(job_id, challenger.id, challenger.version, challenger.bundle_path, model_id))
    return tasks


def record(session: Session, task: ShadowTask, heads: dict[str, Any], decision: dict[str, Any], latency_ms: float) -> bool:
    """Store a challenger's output with its agreement with the champion's result; False
    when the job is gone or already has it."""
    champion = LearningRepository(session).results([task.job_id]).get(task.job_id)
    if champion is None:
        return False
    return LearningRepository(session).add_shadow(ShadowResult(
        job_id=task.job_id, model_version_id=task.challenger_id, champion_version_id=champion.model_version_id,
        heads=heads, decision=decision, agreement=agreement(heads, champion.heads), latency_ms=latency_ms))


def top(head: dict[str, Any]) -> Any:
    if head.get("label") is not None:
        return head["label"]
    if head.get("value") is not None:
        return round(float(head["value"]), 6)
    return sorted(head.get("labels") or [])


def agreement(heads: dict[str, Any], champion: dict[str, Any]) -> dict[str, bool]:
    return {name: top(head) == top(champion[name]) for name, head in heads.items() if name in champion}


def summary(session: Session, principal: Principal, model_id: uuid.UUID) -> dict[str, Any]:
    """GET /v1/models/{id}/shadow: agreement with the champion per task, accuracy of both
    on the shadowed jobs reviewers corrected since, the challenger's latency."""
    model: ModelVersion = models.get_model(session, principal, model_id)
    repo = LearningRepository(session)
    rows = repo.shadow_results(model.id, None if principal.is_platform_admin else principal.tenant_id)
    alias = repo.alias(scope_key(model.tenant_id), model.plugin, "challenger")
    feedback = repo.latest_feedback([row.job_id for row in rows])
    champions = repo.results([row.job_id for row in feedback]) if feedback else {}
    return {
        "model_id": str(model.id),
        "in_shadow": alias is not None and alias.model_version_id == model.id,
        "share": alias.shadow_share if alias is not None and alias.model_version_id == model.id else None,
        "jobs": len(rows),
        "agreement": _agreement_rates(rows),
        "corrected": _accuracy_on_corrected(rows, feedback, champions),
        "latency_ms": latency_summary([row.latency_ms for row in rows]),
    }


def _agreement_rates(rows: list[ShadowResult]) -> dict[str, float]:
    counts: dict[str, list[int]] = {}
    for row in rows:
        for task, same in (row.agreement or {}).items():
            counts.setdefault(task, [0, 0])
            counts[task][0] += int(bool(same))
            counts[task][1] += 1
    return {task: agreed / total for task, (agreed, total) in counts.items() if total}


def _accuracy_on_corrected(rows, feedback, champions) -> dict[str, Any]:
    tallies: dict[str, dict[str, int]] = {}
    for row in rows:
        given = feedback.get(row.job_id)
        champion = champions.get(row.job_id)
        if given is None or champion is None:
            continue
        for task, truth in (given.labels or {}).items():
            if task not in row.heads:
                continue
            tally = tallies.setdefault(task, {"n": 0, "challenger": 0, "champion": 0})
            tally["n"] += 1
            tally["challenger"] += int(_right(row.heads[task], truth))
            tally["champion"] += int(_right(champion.heads.get(task, {}), truth))
    return {task: {"n": t["n"], "challenger_accuracy": t["challenger"] / t["n"], "champion_accuracy": t["champion"] / t["n"]}
            for task, t in tallies.items()}


def _right(head: dict[str, Any], truth: Any) -> bool:
    answer = top(head)
    return sorted(truth) == answer if isinstance(truth, list) else answer == truth
