"""The learning loop (admin): corrections exported as a data set, holdouts, training from
base data + corrections, evaluations, the gate, promotion and rollback, shadow mode,
drift, and the activation history. See docs/learning-loop.md."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from twinlens.api.deps import AdminKeyDep, ApiKeyDep, BlobsDep, SessionDep, SettingsDep, PluginFilter, RequiredPluginFilter
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import (
    CorrectionExportCreate,
    CorrectionsTrainingRunCreate,
    GateRequest,
    HoldoutCreate,
    PromoteRequest,
    RollbackRequest,
    ShadowCreate,
)
from twinlens.services import drift, learning, learning_models, shadow
from twinlens.services.views import (
    ActivationList,
    ActivationView,
    CorrectionExportView,
    DriftView,
    EvaluationList,
    EvaluationView,
    GateReportList,
    GateReportView,
    HoldoutList,
    HoldoutView,
    ModelVersionView,
    PromotionView,
    ShadowConfigView,
    ShadowSummaryView,
    TrainingRunView,
    gate_report_view,
    model_view,
    training_run_view,
)

router = APIRouter(prefix="/v1", responses=problem_responses(400, 401, 403, 422))
ModelId = uuid.UUID


def _thresholds(body) -> dict | None:
    return body.thresholds.model_dump(exclude_none=True) if body is not None and body.thresholds is not None else None


# -- data ---------------------------------------------------------------------------------
@router.post("/corrections/exports", status_code=201, response_model=CorrectionExportView,
             summary="Write the tenant's corrections as a data set in the plugin's format (admin)")
def export_corrections(body: CorrectionExportCreate, principal: AdminKeyDep, session: SessionDep, blobs: BlobsDep,
                       settings: SettingsDep) -> CorrectionExportView:
    summary = learning.export_for_admin(session, blobs, principal, body.plugin, body.output_dir, settings, since=body.since)
    return CorrectionExportView(**{k: v for k, v in summary.as_dict().items() if k != "job_ids"})


@router.post("/holdouts", status_code=201, response_model=HoldoutView, responses=problem_responses(409),
             summary="Freeze the next holdout version: a labelled data set, or the reserved corrections (admin)")
def create_holdout(body: HoldoutCreate, principal: AdminKeyDep, session: SessionDep, settings: SettingsDep) -> HoldoutView:
    if body.data_path is not None:
        holdout = learning.register_holdout(session, principal, body.plugin, body.data_path, settings)
    else:
        holdout = learning.freeze_corrections_holdout(session, principal, principal.tenant_id, body.plugin, settings)
    return HoldoutView.model_validate(holdout)


@router.get("/holdouts", response_model=HoldoutList, summary="The tenant's holdout versions (admin)")
def list_holdouts(principal: AdminKeyDep, session: SessionDep,
                  plugin: PluginFilter = None) -> HoldoutList:
    return HoldoutList(data=[HoldoutView.model_validate(h) for h in learning.list_holdouts(session, principal, plugin)])


@router.post("/training-runs/from-corrections", status_code=202, response_model=TrainingRunView,
             responses=problem_responses(409), summary="Train on base data + the tenant's corrections (admin)")
def create_corrections_training_run(body: CorrectionsTrainingRunCreate, response: Response, principal: AdminKeyDep,
                                    session: SessionDep, settings: SettingsDep) -> TrainingRunView:
    run = learning.submit_corrections_run(session, principal, body.to_loop_request(), settings)
    response.headers["Location"] = f"/v1/training-runs/{run.id}"
    return training_run_view(run)


# -- judging --------------------------------------------------------------------------------
@router.post("/models/{model_id}/evaluations", status_code=202, response_model=TrainingRunView,
             responses=problem_responses(404, 409), summary="Measure the model and the champion on the current holdout (admin)")
def evaluate_model(model_id: ModelId, response: Response, principal: AdminKeyDep, session: SessionDep,
                   settings: SettingsDep) -> TrainingRunView:
    run = learning.submit_evaluation(session, principal, model_id, settings)
    response.headers["Location"] = f"/v1/training-runs/{run.id}"
    return training_run_view(run)


@router.get("/models/{model_id}/evaluations", response_model=EvaluationList,
            responses=problem_responses(404), summary="The model's figures on the tenant's holdout versions")
def list_evaluations(model_id: ModelId, principal: ApiKeyDep, session: SessionDep) -> EvaluationList:
    return EvaluationList(data=[EvaluationView.model_validate(e) for e in learning.evaluations_of(session, principal, model_id)])


@router.post("/models/{model_id}/gate", response_model=GateReportView, responses=problem_responses(404),
             summary="Run the evaluation gate against the champion without promoting (admin)")
def run_gate(model_id: ModelId, principal: AdminKeyDep, session: SessionDep, settings: SettingsDep,
             body: GateRequest | None = None) -> GateReportView:
    return gate_report_view(learning_models.gate_report(session, principal, model_id, settings, _thresholds(body)))


@router.get("/models/{model_id}/gate-reports", response_model=GateReportList,
            responses=problem_responses(404), summary="The gate's reports on this candidate, newest first")
def list_gate_reports(model_id: ModelId, principal: ApiKeyDep, session: SessionDep) -> GateReportList:
    return GateReportList(data=[gate_report_view(r) for r in learning_models.reports_of(session, principal, model_id)])


# -- champion and challenger ------------------------------------------------------------------
@router.post("/models/{model_id}/promote", response_model=PromotionView,
             responses=problem_responses(404, 409),
             summary="Make the candidate the champion if it passes the gate (or forced, with a reason) (admin)")
def promote_model(model_id: ModelId, principal: AdminKeyDep, session: SessionDep, settings: SettingsDep,
                  body: PromoteRequest | None = None) -> PromotionView:
    body = body or PromoteRequest()
    request = learning_models.PromotionRequest(force=body.force, reason=body.reason, thresholds=_thresholds(body))
    promotion = learning_models.promote(session, principal, model_id, request, settings)
    if not promotion.promoted:
        session.commit()  # the blocked attempt's gate report and audit event are kept; nothing else changed
        raise learning_models.blocked(promotion)
    return PromotionView(promoted=True, forced=not promotion.report.passed, model=model_view(promotion.model),
                         gate_report=gate_report_view(promotion.report))


@router.post("/models/{model_id}/rollback", response_model=ModelVersionView,
             responses=problem_responses(404, 409), summary="Make the champion before this one the champion again (admin)")
def rollback_model(model_id: ModelId, principal: AdminKeyDep, session: SessionDep,
                   body: RollbackRequest | None = None) -> ModelVersionView:
    return model_view(learning_models.rollback(session, principal, model_id, body.reason if body else None))


@router.get("/model-activations", response_model=ActivationList,
            summary="The activation history of a plugin in the tenant's (or the global) scope, newest first (admin)")
def list_model_activations(principal: AdminKeyDep, session: SessionDep, plugin: RequiredPluginFilter,
                           scope: Literal["tenant", "global"] = "tenant") -> ActivationList:
    steps = learning_models.history(session, principal, plugin, scope)
    return ActivationList(data=[ActivationView.model_validate(step) for step in steps])


@router.put("/models/{model_id}/shadow", response_model=ShadowConfigView,
            responses=problem_responses(404, 409), summary="Run this model in shadow on a share of live jobs (admin)")
def start_shadow(model_id: ModelId, body: ShadowCreate, principal: AdminKeyDep, session: SessionDep) -> ShadowConfigView:
    alias = learning_models.start_shadow(session, principal, model_id, body.share)
    return ShadowConfigView(model_id=alias.model_version_id, share=alias.shadow_share)


@router.delete("/models/{model_id}/shadow", status_code=204, responses=problem_responses(404, 409),
               summary="Stop running this model in shadow (admin)")
def stop_shadow(model_id: ModelId, principal: AdminKeyDep, session: SessionDep) -> Response:
    learning_models.stop_shadow(session, principal, model_id)
    return Response(status_code=204)


@router.get("/models/{model_id}/shadow", response_model=ShadowSummaryView, responses=problem_responses(404),
            summary="The model's shadow figures: agreement with the champion, accuracy on corrected jobs, latency")
def get_shadow(model_id: ModelId, principal: AdminKeyDep, session: SessionDep) -> ShadowSummaryView:
    return ShadowSummaryView(**shadow.summary(session, principal, model_id))


@router.get("/models/{model_id}/drift", response_model=DriftView, responses=problem_responses(404),
            summary="Per day: class mix, confidence, needs_review share and correction rate of this version")
def get_drift(model_id: ModelId, principal: ApiKeyDep, session: SessionDep,
              days: Annotated[int, Query(ge=1, le=drift.MAX_DAYS)] = 14) -> DriftView:
    return DriftView(**drift.daily(session, principal, model_id, days))
