"""Training runs (admin): ask a training worker for a new model version, follow the run."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from twinlens.api.deps import AdminKeyDep, SessionDep, SettingsDep
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import TrainingRunCreate, TrainingRunList, TrainingRunView, TrainingStatus, training_run_view
from twinlens.services import training

router = APIRouter(prefix="/v1/training-runs", tags=["training"], responses=problem_responses(400, 401, 403, 422))


@router.post(
    "", status_code=202, response_model=TrainingRunView, summary="Train a model version (admin)",
    responses={
        202: {"description": "Queued; poll the Location header", "headers": {"Location": {"schema": {"type": "string"}}}},
        **problem_responses(409),
    },
)
def create_training_run(body: TrainingRunCreate, response: Response, principal: AdminKeyDep, session: SessionDep) -> TrainingRunView:
    fields = body.model_dump(exclude={"dataset"})
    dataset = body.dataset.model_dump(exclude_unset=True) if body.dataset is not None else {}
    run = training.submit_run(session, principal, training.TrainingRequest(**fields, dataset=dataset))
    response.headers["Location"] = f"/v1/training-runs/{run.id}"
    return training_run_view(run)


@router.get("/{run_id}", response_model=TrainingRunView, summary="One training run (admin)", responses=problem_responses(404))
def get_training_run(run_id: uuid.UUID, principal: AdminKeyDep, session: SessionDep) -> TrainingRunView:
    return training_run_view(training.get_run(session, principal, run_id))


@router.get("", response_model=TrainingRunList, summary="Training runs of this key's tenant, newest first (admin)")
def list_training_runs(
    principal: AdminKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    plugin: Annotated[str | None, Query(max_length=100)] = None,
    status: TrainingStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="next_cursor from the previous page")] = None,
) -> TrainingRunList:
    runs, next_cursor = training.list_runs(
        session, principal, limit=min(limit, settings.page_size_limit), plugin=plugin, status=status, cursor=cursor
    )
    return TrainingRunList(data=[training_run_view(run) for run in runs], next_cursor=next_cursor)
