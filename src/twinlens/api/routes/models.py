"""Model versions: list, register a bundle (admin), activate (admin)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from twinlens.api.deps import AdminKeyDep, ApiKeyDep, SessionDep, SettingsDep, PluginFilter
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import ModelCreate
from twinlens.services import models
from twinlens.services.views import ModelList, ModelVersionView, model_view

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(400, 401, 422))


@router.get("", response_model=ModelList, summary="Models this key may use (its tenant's and global ones)")
def list_models(principal: ApiKeyDep, session: SessionDep, plugin: PluginFilter = None) -> ModelList:
    return ModelList(data=[model_view(m) for m in models.list_models(session, principal, plugin)])


@router.post(
    "", status_code=201, response_model=ModelVersionView, summary="Register a model bundle from the model roots (admin; global ones: platform admin)",
    responses=problem_responses(403, 409),
)
def register_model(body: ModelCreate, principal: AdminKeyDep, session: SessionDep, settings: SettingsDep) -> ModelVersionView:
    model = models.register_requested_bundle(session, principal, body.bundle_path, settings.resolved_model_roots,
                                             scope=body.scope, activate=body.activate)
    return model_view(model)


@router.get("/{model_id}", response_model=ModelVersionView, summary="One model version", responses=problem_responses(404))
def get_model(model_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep) -> ModelVersionView:
    return model_view(models.get_model(session, principal, model_id))


@router.post(
    "/{model_id}/activate", response_model=ModelVersionView, summary="Use this version for new jobs (admin; global ones: platform admin)",
    responses=problem_responses(403, 404),
)
def activate_model(model_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> ModelVersionView:
    return model_view(models.activate_model(session, principal, model_id))
