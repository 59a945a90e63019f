"""Bulk scoring batches: upload a JSONL/CSV file, follow it, download its answers, cancel
or delete it (docs/bulk.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile
from fastapi.responses import StreamingResponse

from twinlens.api.deps import ApiKeyDep, DatabaseDep, PageDep, PluginDep, SessionDep, SettingsDep, PluginFilter
from twinlens.api.problems import problem_responses
from twinlens.services import batches
from twinlens.services.views import BatchList, BatchStatus, BatchView

router = APIRouter(prefix="/v1", tags=["batches"], responses=problem_responses(400, 401, 422))
JSON_LINES = "application/x-ndjson"


class JsonLinesResponse(StreamingResponse):
    media_type = JSON_LINES


@router.post(
    "/plugins/{name}/batches",
    status_code=202,
    response_model=BatchView,
    summary="Score a JSONL/CSV file of inputs",
    responses={
        202: {"description": "Accepted (bad rows are reported, not fatal); poll the Location header",
              "headers": {"Location": {"schema": {"type": "string"}}}},
        **problem_responses(404, 409, 413, 415),
    },
)
def create_batch(
    response: Response,
    plugin: PluginDep,
    principal: ApiKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The rows: .jsonl/.ndjson or .csv/.tsv (columns: the plugin's texts, "
                                                 "image (URL, or a path for admin keys), metadata, id)")],
) -> BatchView:
    upload = batches.BatchUpload(file.filename or "", file.content_type, file.file.read(settings.bulk_max_upload_bytes + 1))
    view = batches.submit_batch(session, settings, principal, plugin, upload)
    response.headers["Location"] = f"/v1/batches/{view.id}"
    return view


@router.get("/batches/{batch_id}", response_model=BatchView, summary="A batch's progress and first bad rows",
            responses=problem_responses(404))
def get_batch(batch_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep) -> BatchView:
    return batches.batch_status(session, principal, batch_id)


@router.get("/batches", response_model=BatchList, summary="Batches of this key's tenant, newest first")
def list_batches(
    principal: ApiKeyDep,
    session: SessionDep,
    page: PageDep,
    plugin: PluginFilter = None,
    status: BatchStatus | None = None,
) -> BatchList:
    return batches.list_batches(session, principal, page, plugin=plugin, status=status)


@router.get(
    "/batches/{batch_id}/results",
    response_class=JsonLinesResponse,
    summary="The batch's answers as JSONL",
    responses={
        200: {"content": {JSON_LINES: {"schema": {"type": "string"}}},
              "description": "One JSON object per answered row, in file order: line, id, status, and model_version, "
                             "prediction (every head's probabilities) and decision, or error {field, reason}"},
        **problem_responses(404, 410),
    },
)
def get_batch_results(batch_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep, db: DatabaseDep) -> JsonLinesResponse:
    lines = batches.result_lines(session, db, principal, batch_id)
    return JsonLinesResponse(_encoded(lines), headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.jsonl"'})


def _encoded(lines: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for line in lines:
        yield (json.dumps(line, allow_nan=False) + "\n").encode()


@router.post("/batches/{batch_id}/cancel", response_model=BatchView, summary="Stop a queued or running batch",
             responses=problem_responses(404, 409))
def cancel_batch(batch_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep) -> BatchView:
    return batches.cancel_batch(session, principal, batch_id)


@router.delete("/batches/{batch_id}", status_code=204, summary="Delete a batch with its rows and answers now",
               responses=problem_responses(404))
def delete_batch(batch_id: uuid.UUID, principal: ApiKeyDep, session: SessionDep) -> Response:
    batches.delete_batch(session, principal, batch_id)
    return Response(status_code=204)
