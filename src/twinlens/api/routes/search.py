"""Similar past cases and search within the caller's tenant, and aligned image-text spaces
(docs/search.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from twinlens.api.deps import PRINTABLE_PATTERN, AdminKeyDep, ApiKeyDep, DatabaseDep, PluginDep, SessionDep, SettingsDep
from twinlens.api.problems import problem_responses
from twinlens.api.schemas import AlignmentCreate, SearchCreate
from twinlens.services import alignment, search
from twinlens.services.search import SearchFilters
from twinlens.services.views import SimilarCases, TrainingRunView, training_run_view

router = APIRouter(prefix="/v1", tags=["search"], responses=problem_responses(400, 401, 422))


@router.get(
    "/jobs/{job_id}/similar", response_model=SimilarCases, summary="The job's most similar past cases",
    responses=problem_responses(404, 409),
)
def similar_cases(
    job_id: uuid.UUID,
    principal: ApiKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=1, le=1000, description="How many cases (capped by the server)")] = 10,
    label: Annotated[str | None, Query(min_length=1, max_length=200, pattern=PRINTABLE_PATTERN, description="Only cases with this label")] = None,
    corrected_only: Annotated[bool, Query(description="Only cases a reviewer corrected")] = False,
) -> SimilarCases:
    return search.similar_cases(session, principal, job_id, k, settings, SearchFilters(label=label, corrected_only=corrected_only))


@router.post(
    "/search", response_model=SimilarCases, summary="Find past cases with a text or an image",
    responses=problem_responses(404, 409, 413, 415, 503),
)
async def search_cases(body: SearchCreate, principal: ApiKeyDep, session: SessionDep, db: DatabaseDep,
                       settings: SettingsDep) -> SimilarCases:
    # The key lookup's transaction ends before the search opens its own sessions and waits for
    # a worker: left open it would sit idle for the whole wait, and on SQLite (where every
    # transaction takes the write lock) the search's sessions would wait for it until busy_timeout.
    session.commit()
    return await search.search(db, principal, body.to_request(), settings)


@router.post(
    "/plugins/{name}/alignments", status_code=202, response_model=TrainingRunView,
    summary="Train an aligned image-text space on the tenant's own pairs (admin)",
    responses={
        202: {"description": "Queued as a training run of kind align; poll the Location header",
              "headers": {"Location": {"schema": {"type": "string"}}}},
        **problem_responses(403, 404, 409),
    },
)
def create_alignment(
    body: AlignmentCreate, plugin: PluginDep, response: Response, principal: AdminKeyDep, session: SessionDep, settings: SettingsDep,
) -> TrainingRunView:
    run = alignment.submit_align_run(session, principal, body.to_request(plugin.name), settings)
    response.headers["Location"] = f"/v1/training-runs/{run.id}"
    return training_run_view(run)
