"""Champions and challengers: promote a candidate through the evaluation gate (or past it,
forced, with the reason recorded), roll back to the previous champion, put a challenger
in shadow, read the activation history and the gate reports.

A scope is a tenant (its own models) or global; a candidate competes with the model new
jobs of its scope use now (for a tenant's model: the tenant's active one, else the global
one), both measured on the caller's tenant's current holdout version. Workers pick up a
new champion without a restart: each job names its model version when it is submitted
(services/jobs.py), and the model cache loads a version on first use.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from twinlens.contract.errors import InputError
from twinlens.db.learning_tables import GateReport, ModelActivation, ModelAlias
from twinlens.db.models import ModelVersion
from twinlens.db.repositories import AuditRepository, ModelRepository
from twinlens.db.repositories.learning import LearningRepository, scope_key
from twinlens.services import gate, models
from twinlens.services.errors import Conflict, NotFound
from twinlens.services.keys import Principal
from twinlens.services.models import ActivationStep
from twinlens.settings import Settings

MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class PromotionRequest:
    force: bool = False
    reason: str | None = None
    thresholds: dict[str, Any] | None = None  # overrides of the gate settings, per request


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    model: ModelVersion
    report: GateReport


def _manageable(session: Session, principal: Principal | None, model_id: uuid.UUID, action: str) -> ModelVersion:
    if principal is not None:
        principal.require_admin()
    model = models.get_model(session, principal, model_id) if principal is not None else ModelRepository(session).get(model_id)
    if model is None:
        raise NotFound(f"no model {model_id}")
    if principal is not None and model.tenant_id is None:
        principal.require_platform_admin(f"{action} a global model")
    return model


def champion_for(session: Session, model: ModelVersion) -> ModelVersion | None:
    return ModelRepository(session).active(model.plugin, model.tenant_id)


def run_gate(session: Session, principal: Principal | None, model: ModelVersion, settings: Settings,
             overrides: dict[str, Any] | None, holdout_tenant: uuid.UUID | None) -> GateReport:
    """Judge `model` against its scope's champion on the tenant's current holdout; the
    report is stored (whatever the verdict)."""
    thresholds = gate.GateThresholds.from_settings(settings, overrides)
    repo = LearningRepository(session)
    champion = champion_for(session, model)
    holdout = repo.latest_holdout(holdout_tenant, model.plugin) if holdout_tenant is not None else None
    checks = _checks(repo, model, champion, holdout, thresholds)
    report = repo.add_report(GateReport(
        tenant_id=holdout_tenant, plugin=model.plugin, candidate_id=model.id,
        champion_id=champion.id if champion is not None else None, holdout_id=holdout.id if holdout else None,
        thresholds=thresholds.as_dict(), checks=[check.as_dict() for check in checks], passed=gate.verdict(checks)))
    return report


def _checks(repo: LearningRepository, model: ModelVersion, champion: ModelVersion | None, holdout, thresholds) -> list[gate.Check]:
    if holdout is None:
        return [gate.Check("holdout", False, f"no holdout for {model.plugin}: register one or correct more jobs, then "
                                             "evaluate (POST /v1/models/{id}/evaluations)")]
    mine = repo.evaluation(model.id, holdout.id)
    if mine is None:
        return [gate.Check("candidate_evaluated", False, f"the candidate was not measured on holdout v{holdout.version}: "
                                                         f"POST /v1/models/{model.id}/evaluations")]
    theirs = None
    if champion is not None and champion.id != model.id:
        evaluation = repo.evaluation(champion.id, holdout.id)
        if evaluation is None:
            return [gate.Check("champion_evaluated", False, f"the champion {champion.version} was not measured on holdout "
                                                            f"v{holdout.version}: POST /v1/models/{model.id}/evaluations "
                                                            "measures both")]
        theirs = evaluation.metrics
    return gate.run_checks(mine.metrics, theirs, thresholds)


def gate_report(session: Session, principal: Principal, model_id: uuid.UUID, settings: Settings,
                overrides: dict[str, Any] | None = None) -> GateReport:
    """POST /v1/models/{id}/gate: the gate's verdict without promoting."""
    model = _manageable(session, principal, model_id, "judging")
    return run_gate(session, principal, model, settings, overrides, principal.tenant_id)


def promote(session: Session, principal: Principal | None, model_id: uuid.UUID, request: PromotionRequest,
            settings: Settings, tenant_id: uuid.UUID | None = None) -> Promotion:
    """Run the gate; activate the candidate if it passes, or when forced (a reason is then
    required). A blocked promotion changes nothing but leaves its report."""
    model = _manageable(session, principal, model_id, "promoting")
    reason = _reason(request)
    champion = champion_for(session, model)
    if champion is not None and champion.id == model.id:
        raise Conflict(f"model {model.id} is already the champion of its scope", model_id=str(model.id))
    holdout_tenant = principal.tenant_id if principal is not None else (tenant_id or model.tenant_id)
    report = run_gate(session, principal, model, settings, request.thresholds, holdout_tenant)
    _audit(session, principal, "model.gate", model, {"passed": report.passed, "gate_report_id": str(report.id),
                                                     "failed": [c["name"] for c in report.checks if not c["passed"]]})
    if not report.passed and not request.force:
        return Promotion(False, model, report)
    step = ActivationStep("promote", reason=reason, forced=not report.passed, gate_report_id=report.id)
    models.activate_model(session, principal, model.id, step=step)
    return Promotion(True, model, report)


def _reason(request: PromotionRequest) -> str | None:
    reason = (request.reason or "").strip() or None
    if request.force and reason is None:
        raise InputError("reason", "a forced promotion needs a reason (it is recorded in the history)")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise InputError("reason", f"longer than {MAX_REASON_CHARS} characters")
    return reason


def blocked(promotion: Promotion) -> Conflict:
    report = promotion.report
    return Conflict("the evaluation gate blocked this promotion: " + "; ".join(gate.failures_of(report.checks)),
                    gate_report_id=str(report.id), checks=report.checks)


def rollback(session: Session, principal: Principal | None, model_id: uuid.UUID, reason: str | None = None) -> ModelVersion:
    """`model_id` is the current champion; the champion before it (the history's previous
    step) becomes the champion again."""
    model = _manageable(session, principal, model_id, "rolling back")
    if not model.is_active:
        raise Conflict(f"model {model.id} is not the champion of its scope; roll back from the champion",
                       model_id=str(model.id))
    repo = LearningRepository(session)
    step = repo.last_activation_of(model.id)
    previous = ModelRepository(session).get(step.previous_model_version_id) if step and step.previous_model_version_id else None
    if previous is None:
        raise Conflict(f"the history names no champion before {model.version} to go back to", model_id=str(model.id))
    text = (reason or "").strip()[:MAX_REASON_CHARS] or None
    return models.activate_model(session, principal, previous.id,
                                 step=ActivationStep("rollback", reason=text or f"rolled back from {model.version}"))


def history(session: Session, principal: Principal, plugin: str, scope: str = "tenant") -> list[ModelActivation]:
    """The activation history of the caller's tenant (or, scope=global, of the global models)."""
    principal.require_admin()
    if scope not in ("tenant", "global"):
        raise InputError("scope", "tenant or global")
    key = scope_key(principal.tenant_id if scope == "tenant" else None)
    return LearningRepository(session).history(key, plugin)


# -- challengers (shadow) ----------------------------------------------------------------------
def start_shadow(session: Session, principal: Principal | None, model_id: uuid.UUID, share: float) -> ModelAlias:
    """Make the model its scope's challenger: it runs in shadow on `share` of the scope's
    live jobs (0 < share <= 1); its outputs are stored apart and never returned."""
    model = _manageable(session, principal, model_id, "shadowing")
    if not 0.0 < share <= 1.0:
        raise InputError("share", "a share of live jobs, above 0 and at most 1")
    if model.is_active:
        raise Conflict(f"model {model.id} is the champion; a challenger is another version", model_id=str(model.id))
    alias = LearningRepository(session).set_alias(scope_key(model.tenant_id), model.plugin, "challenger", model.id, share)
    _audit(session, principal, "model.shadow.start", model, {"share": share})
    return alias


def stop_shadow(session: Session, principal: Principal | None, model_id: uuid.UUID) -> None:
    model = _manageable(session, principal, model_id, "shadowing")
    repo = LearningRepository(session)
    alias = repo.alias(scope_key(model.tenant_id), model.plugin, "challenger")
    if alias is None or alias.model_version_id != model.id:
        raise Conflict(f"model {model.id} is not in shadow", model_id=str(model.id))
    repo.clear_alias(alias.scope, alias.plugin, "challenger")
    _audit(session, principal, "model.shadow.stop", model, {})


def aliases_of(session: Session, model: ModelVersion) -> dict[str, Any]:
    return {row.alias: {"shadow_share": row.shadow_share} if row.alias == "challenger" else {}
            for row in LearningRepository(session).aliases_of(model.id)}


def reports_of(session: Session, principal: Principal, model_id: uuid.UUID) -> list[GateReport]:
    model = models.get_model(session, principal, model_id)
    return [r for r in LearningRepository(session).reports_for(model.id)
            if r.tenant_id in (principal.tenant_id, None) or principal.is_platform_admin]


def _audit(session: Session, principal: Principal | None, action: str, model: ModelVersion, details: dict) -> None:
    AuditRepository(session).record(action, tenant_id=principal.tenant_id if principal else model.tenant_id,
                                    api_key_id=principal.key_id if principal else None, target=f"model:{model.id}",
                                    details=details)
