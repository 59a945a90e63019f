"""Similar past cases and search: case-to-case (`GET /v1/jobs/{id}/similar`), and text or
image queries (`POST /v1/search`): text-to-image, text-to-case, image-to-image.

Every search stays inside the caller's tenant (admins' too): the vectors, indexes and
cases read are the tenant's own, so another tenant's case can never be a neighbour.

Comparable vectors only: a case's fused vector with other cases' fused vectors of the
same model version; a query's image (or text) vector with the cases' image (or text)
vectors, both from the same encoder and projection; text-to-image only in an aligned
space (the image and text maps of engine/align.py, trained on the tenant's own pairs),
because the model's image and text vectors are two different spaces.

A text or image query has to go through the model, and the API never loads it: the query
is written as a `search_queries` row, a worker on the plugin's predict queue embeds it
(worker/search_tasks.py), and the request waits (at most `search_query_timeout_seconds`)
for the vectors, then deletes the row, so the query itself is never kept.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import anyio
import numpy as np
from sqlalchemy.orm import Session

from twinlens.contract.errors import InputError
from twinlens.contract.registry import get_plugin
from twinlens.db.base import utcnow
from twinlens.db.embedding_tables import AlignmentSpace, SearchQuery
from twinlens.db.models import Feedback, Job, ModelVersion, Result
from twinlens.db.repositories import ModelRepository
from twinlens.db.repositories.embeddings import CaseFilters, EmbeddingRepository, VectorScope
from twinlens.db.session import Database, after_commit
from twinlens.queue import publish_search_task
from twinlens.services import jobs
from twinlens.services.case_embeddings import FUSED
from twinlens.services.errors import Conflict, NotFound, ServiceUnavailable
from twinlens.services.inputs import check_image
from twinlens.services.keys import Principal
from twinlens.services.models import model_for_new_job
from twinlens.services.search_index import Hit, normalised, ranked
from twinlens.services.views import CorrectionView, SearchQueryView, SimilarCase, SimilarCases, model_ref
from twinlens.settings import Settings

EMBED_QUERY_TASK = "twinlens.embed_query"
BUILD_INDEXES_TASK = "twinlens.build_search_indexes"
ALIGNED = "aligned"
ALIGNED_IMAGE = "aligned_image"  # the index kind over a space's image side
Target = Literal["images", "cases"]
FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.25
# Label-filtered searches look at this many ranked cases per round.
LABEL_ROUND = 64


@dataclass(frozen=True)
class SearchFilters:
    label: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    corrected_only: bool = False


@dataclass(frozen=True)
class SearchRequest:
    plugin: str
    text: str | None = None
    image: bytes | None = None
    media_type: str | None = None
    # For a text query: the cases' images (in the aligned space) or their texts. None:
    # images when the model version has an aligned space, else cases.
    target: Target | None = None
    k: int = 10
    filters: SearchFilters = SearchFilters()
    model_id: uuid.UUID | None = None


# -- case to case ---------------------------------------------------------------------------


def similar_cases(session: Session, principal: Principal, job_id: uuid.UUID, k: int, settings: Settings,
                  filters: SearchFilters = SearchFilters()) -> SimilarCases:
    """The job's nearest past cases of its tenant and model version (fused vectors)."""
    job = jobs.get_job(session, principal, job_id)
    vectors = EmbeddingRepository(session).for_job(principal.tenant_id, job.id)
    if FUSED not in vectors:
        raise Conflict(_why_no_vectors(job), job_id=str(job.id), status=job.status)
    query = np.frombuffer(vectors[FUSED].vector, dtype="<f4")
    scope = VectorScope(principal.tenant_id, job.model_version_id, FUSED)
    hits, exact = _nearest(session, scope, query, _capped(k, settings), filters, exclude=job.id)
    return _answer(session, principal, job.model_version, FUSED, "model", exact, hits)


def _why_no_vectors(job: Job) -> str:
    if job.status != "succeeded":
        return f"job {job.id} is {job.status}: a case has vectors once it succeeded"
    if job.inputs_purged_at is not None:
        return f"job {job.id}'s inputs were purged, and its vectors with them"
    return f"job {job.id} has no stored vectors (it ran before similar-case search existed)"


# -- text and image queries -----------------------------------------------------------------


@dataclass(frozen=True)
class PendingQuery:
    id: uuid.UUID
    tenant_id: uuid.UUID
    model_version_id: uuid.UUID
    kind: str  # the stored vectors it is compared with
    space: Literal["model", "aligned"]


async def search(db: Database, principal: Principal, request: SearchRequest, settings: Settings) -> SimilarCases:
    """Embed the query on a worker (waiting for it), then rank the tenant's cases."""
    pending = await anyio.to_thread.run_sync(_submit_query, db, principal, request, settings)
    try:
        vectors = await _wait_for_vectors(db, pending.id, settings.search_query_timeout_seconds)
        return await anyio.to_thread.run_sync(_rank_query, db, principal, request, pending, vectors, settings)
    finally:
        await anyio.to_thread.run_sync(_drop_query, db, pending.id)


def _submit_query(db: Database, principal: Principal, request: SearchRequest, settings: Settings) -> PendingQuery:
    with db.session() as session:
        model = _model(session, principal, request, settings)
        kind, space = _query_kind(session, principal, model, request)
        media_type = None
        if request.image is not None:
            media_type = check_image(get_plugin(model.plugin), request.image, request.media_type, settings)
        row = EmbeddingRepository(session).add_query(SearchQuery(
            tenant_id=principal.tenant_id, model_version_id=model.id, plugin=model.plugin, status="queued",
            text=request.text if request.image is None else None, image=request.image, media_type=media_type))
        query_id, plugin = row.id, model.plugin
        after_commit(session, lambda: publish_search_task(EMBED_QUERY_TASK, str(query_id), plugin))
        return PendingQuery(query_id, principal.tenant_id, model.id, kind, space)


def _model(session: Session, principal: Principal, request: SearchRequest, settings: Settings) -> ModelVersion:
    _known_plugin(request.plugin)
    if request.model_id is None:
        return model_for_new_job(session, principal.tenant_id, request.plugin, zero_shot=settings.zero_shot)
    model = ModelRepository(session).get(request.model_id)
    if model is None or model.plugin != request.plugin or (model.tenant_id is not None and model.tenant_id != principal.tenant_id):
        raise NotFound(f"no model {request.model_id} of plugin {request.plugin}")
    return model


def _known_plugin(name: str) -> None:
    try:
        get_plugin(name)
    except Exception as exc:  # unknown or broken plugin
        raise NotFound(f"no plugin {name!r}") from exc


def _query_kind(session: Session, principal: Principal, model: ModelVersion, request: SearchRequest) -> tuple[str, Literal["model", "aligned"]]:
    """Which stored vectors the query is compared with, and in which space."""
    if (request.text is None) == (request.image is None):
        raise InputError("text", "give a text or an image to search with (one of them)")
    if request.image is not None:
        if request.target == "cases":
            raise InputError("target", "an image query finds cases by their images; leave target out or set it to images")
        return "image", "model"
    aligned = EmbeddingRepository(session).alignment(principal.tenant_id, model.id)
    target = request.target or ("images" if aligned is not None else "cases")
    if target == "images":
        if aligned is None:
            raise Conflict(f"model {model.version} has no aligned image-text space for this tenant, so text cannot be compared "
                           "with images; train one (a training run of kind align, or `twinlens align`), or search target=cases",
                           model_id=str(model.id))
        return aligned.text_kind, ALIGNED
    return text_modality(model), "model"


def text_modalities(model: ModelVersion) -> list[str]:
    """The model's text inputs (its modalities other than the image)."""
    return [m for m in (model.model_spec or {}).get("modalities") or [] if m != "image"]


def text_modality(model: ModelVersion) -> str:
    """The text input a text-to-case query is compared on: the model's first."""
    texts = text_modalities(model)
    if not texts:
        raise Conflict(f"model {model.version} reads no text, so it cannot be searched with text", model_id=str(model.id))
    return texts[0]


async def _wait_for_vectors(db: Database, query_id: uuid.UUID, seconds: float) -> dict[str, list[float]]:
    deadline = time.monotonic() + seconds
    pause = FIRST_POLL_SECONDS
    while time.monotonic() < deadline:
        await anyio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        row = await anyio.to_thread.run_sync(_query_state, db, query_id)
        if row is not None and row[0] == "succeeded":
            return row[1] or {}
        if row is not None and row[0] == "failed":
            raise InputError("query", row[2] or "the query could not be embedded")
        pause = min(pause * 1.5, MAX_POLL_SECONDS)
    raise ServiceUnavailable(f"no worker embedded the query within {seconds:g} s; try again (is a worker serving this plugin?)")


def _query_state(db: Database, query_id: uuid.UUID) -> tuple[str, dict[str, Any] | None, str | None] | None:
    with db.session() as session:
        row = EmbeddingRepository(session).query(query_id)
        return None if row is None else (row.status, row.vectors, row.error)


def _drop_query(db: Database, query_id: uuid.UUID) -> None:
    with db.session() as session:
        EmbeddingRepository(session).delete_query(query_id)


def _rank_query(db: Database, principal: Principal, request: SearchRequest, pending: PendingQuery,
                vectors: dict[str, list[float]], settings: Settings) -> SimilarCases:
    with db.session() as session:
        model = session.get(ModelVersion, pending.model_version_id)
        if pending.kind not in vectors:
            raise Conflict(f"model {model.version} gives no {pending.kind} vector for this query", model_id=str(model.id))
        query = np.asarray(vectors[pending.kind], dtype=np.float32)
        k = _capped(request.k, settings)
        if pending.space == ALIGNED:
            space = aligned_space(EmbeddingRepository(session).alignment(principal.tenant_id, model.id))
            scope = VectorScope(principal.tenant_id, model.id, "image")
            hits, exact = _nearest(session, scope, space.text(query), k, request.filters, transform=space.image,
                                   index_kind=ALIGNED_IMAGE)
            return _answer(session, principal, model, ALIGNED, ALIGNED, exact, hits)
        scope = VectorScope(principal.tenant_id, model.id, pending.kind)
        hits, exact = _nearest(session, scope, query, k, request.filters)
        return _answer(session, principal, model, pending.kind, "model", exact, hits)


# -- the aligned space (numpy: the API applies it to stored vectors) --------------------------


@dataclass(frozen=True)
class AlignedMaps:
    """The two linear maps of an aligned space, each followed by L2 normalisation."""

    image_weight: np.ndarray
    image_bias: np.ndarray
    text_weight: np.ndarray
    text_bias: np.ndarray

    def image(self, vectors: np.ndarray) -> np.ndarray:
        return normalised(np.atleast_2d(vectors) @ self.image_weight.T + self.image_bias)

    def text(self, vectors: np.ndarray) -> np.ndarray:
        return normalised(np.atleast_2d(vectors) @ self.text_weight.T + self.text_bias)[0]


def aligned_space(space: AlignmentSpace) -> AlignedMaps:
    arrays = unpack_weights(space.weights, space.layout)
    return AlignedMaps(arrays["image.weight"], arrays["image.bias"], arrays["text.weight"], arrays["text.bias"])


def pack_weights(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, Any]]:
    """float32 bytes of the arrays in order, and the layout (names and shapes) to read them."""
    layout = {"order": [{"name": name, "shape": list(np.shape(value))} for name, value in arrays.items()]}
    return b"".join(np.ascontiguousarray(value, dtype="<f4").tobytes() for value in arrays.values()), layout


def unpack_weights(data: bytes, layout: dict[str, Any]) -> dict[str, np.ndarray]:
    flat = np.frombuffer(data, dtype="<f4")
    arrays, offset = {}, 0
    for entry in layout["order"]:
        size = int(np.prod(entry["shape"])) if entry["shape"] else 1
        arrays[entry["name"]] = flat[offset:offset + size].reshape(entry["shape"]).astype(np.float32)
        offset += size
    return arrays


# -- ranking and rendering ------------------------------------------------------------------------


def _capped(k: int, settings: Settings) -> int:
    if k < 1:
        raise InputError("k", "k is at least 1")
    return min(k, settings.search_max_k)


def _nearest(session: Session, scope: VectorScope, query: np.ndarray, k: int, filters: SearchFilters, *,
             exclude: uuid.UUID | None = None, transform: Callable[[np.ndarray], np.ndarray] | None = None,
             index_kind: str | None = None) -> tuple[list[Hit], bool]:
    sql_filters = CaseFilters(created_from=filters.created_from, created_to=filters.created_to,
                              corrected_only=filters.corrected_only, exclude_job=exclude)
    hits, exact = ranked(session, scope, query, k, sql_filters, transform=transform, index_kind=index_kind,
                         exhaustive=filters.label is not None)
    if filters.label is None:
        return hits[:k], exact
    return _with_label(session, scope.tenant_id, hits, filters.label, k), exact


def _with_label(session: Session, tenant_id: uuid.UUID, hits: list[Hit], label: str, k: int) -> list[Hit]:
    """The best `k` hits whose case has `label`: predicted (any head) or given in a correction."""
    kept: list[Hit] = []
    repo = EmbeddingRepository(session)
    for start in range(0, len(hits), LABEL_ROUND):
        chunk = hits[start:start + LABEL_ROUND]
        cases = repo.cases(tenant_id, [hit.job_id for hit in chunk])
        for hit in chunk:
            if hit.job_id in cases and label in _case_labels(*cases[hit.job_id][1:]):
                kept.append(hit)
                if len(kept) == k:
                    return kept
    return kept


def _case_labels(result: Result | None, correction: Feedback | None) -> set[str]:
    found: set[str] = set()
    for labels in (predicted_labels(result), correction.labels if correction is not None else {}):
        for value in labels.values():
            found.update(str(v) for v in (value if isinstance(value, list) else [value]) if v is not None)
    return found


def predicted_labels(result: Result | None) -> dict[str, Any]:
    if result is None:
        return {}
    labels = {}
    for name, head in (result.heads or {}).items():
        kind = head.get("kind")
        labels[name] = head.get("labels") if kind == "multilabel" else head.get("value") if kind == "regression" else head.get("label")
    return labels


def _answer(session: Session, principal: Principal, model: ModelVersion, kind: str, space: Literal["model", "aligned"],
            exact: bool, hits: list[Hit]) -> SimilarCases:
    cases = EmbeddingRepository(session).cases(principal.tenant_id, [hit.job_id for hit in hits])
    data = []
    for hit in hits:
        if hit.job_id not in cases:  # deleted between ranking and now
            continue
        job, result, correction = cases[hit.job_id]
        data.append(SimilarCase(
            job_id=job.id, score=round(hit.score, 6), plugin=job.plugin, created_at=job.created_at,
            labels=predicted_labels(result), decision=(result.decision if result is not None else {}) or {},
            correction=CorrectionView(labels=correction.labels, created_at=correction.created_at) if correction else None,
        ))
    return SimilarCases(query=SearchQueryView(model_version=model_ref(model), kind=kind, space=space, exact=exact), data=data)


# -- upkeep (the worker's sweep) -------------------------------------------------------------------


def drop_stale_queries(session: Session, settings: Settings) -> int:
    """Queries whose request gave up (a crashed API process) are deleted by the sweep."""
    cutoff = utcnow() - timedelta(seconds=2 * settings.search_query_timeout_seconds + 60)
    return EmbeddingRepository(session).delete_queries_before(cutoff)
