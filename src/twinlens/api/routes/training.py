"""Training runs (admin): ask a training worker for a new model version, follow the run."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from twinlens.api.deps import AdminKeyDep, PageDep, SessionDep, SettingsDep, PluginFilter
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import TrainingRunCreate
from twinlens.services import training
from twinlens.services.views import TrainingRunList, TrainingRunView, TrainingStatus, training_run_view

router = APIRouter(prefix="/v1/training-runs", tags=["training"], responses=problem_responses(400, 401, 403, 422))


@router.post(
    "", status_code=202, response_model=TrainingRunView, summary="Train a model version (admin)",
    responses={
        202: {"description": "Queued; poll the Location header", "headers": {"Location": {"schema": {"type": "string"}}}},
        **problem_responses(409),
    },
)
def create_training_run(
    body: TrainingRunCreate, response: Response, principal: AdminKeyDep, session: SessionDep, settings: SettingsDep,
) -> TrainingRunView:
    run = training.submit_run(session, principal, body.to_training_request(), settings)
    response.headers["Location"] = f"/v1/training-runs/{run.id}"
    return training_run_view(run)


@router.get("/{run_id:uuid}", response_model=TrainingRunView, summary="One training run (admin)", responses=problem_responses(404))
def get_training_run(run_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> TrainingRunView:
    return training_run_view(training.get_run(session, principal, run_id))


@router.get("", response_model=TrainingRunList, summary="Training runs of this key's tenant, newest first (admin)")
def list_training_runs(
    principal: AdminKeyDep,
    session: SessionDep,
    page: PageDep,
    plugin: PluginFilter = None,
    status: TrainingStatus | None = None,
) -> TrainingRunList:
    runs, next_cursor = training.list_runs(session, principal, page, plugin=plugin, status=status)
    return TrainingRunList(data=[training_run_view(run) for run in runs], next_cursor=next_cursor)
