"""The worker's part of similar-case search: storing each job's vectors (called by the
pipeline), embedding text and image queries, building FAISS indexes for large tenants,
and training aligned image-text spaces (training runs of kind "align").

Query embedding and index builds run on the plugin's predict queue (that worker has the
model loaded); the sweep asks for index builds where a scope outgrew exact search or its
index fell behind by `search_rebuild_after_rows`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session

from twinlens.contract.errors import InputError, TwinLensError
from twinlens.contract.plugin import RawInput
from twinlens.contract.registry import get_plugin
from twinlens.db.models import ModelVersion
from twinlens.db.repositories.embeddings import EmbeddingRepository, VectorScope
from twinlens.queue import publish_search_task
from twinlens.services import alignment, case_embeddings, search, search_index, training
from twinlens.worker.context import WorkerContext, get_context

log = logging.getLogger(__name__)


# -- with each finished job (worker/pipeline.py) -------------------------------------------------


def store_job_vectors(session: Session, job: Any, prediction: Any) -> None:
    """Called in the transaction that writes the job's result: its vectors go with it."""
    vectors = getattr(prediction, "embeddings", None)
    if vectors:
        case_embeddings.store_for_job(session, job.id, job.model_version_id, vectors)


# -- tasks by name -------------------------------------------------------------------------------


def run_search_task(task: str, argument: str, context: WorkerContext | None = None) -> Any:
    ctx = context or get_context()
    if task == search.EMBED_QUERY_TASK:
        return embed_query(argument, ctx)
    if task == search.BUILD_INDEXES_TASK:
        return build_scope_index(argument, ctx)
    raise ValueError(f"unknown search task {task!r}")


def embed_query(query_id: str, context: WorkerContext | None = None) -> str | None:
    """Embed one waiting query with its model version; the API reads the vectors."""
    ctx = context or get_context()
    with ctx.db.session() as session:
        row = EmbeddingRepository(session).query(uuid.UUID(query_id))
        if row is None or row.status != "queued":
            return None  # answered, or the request gave up and deleted it
        model = session.get(ModelVersion, row.model_version_id)
        text, image, media_type, plugin_name = row.text, row.image, row.media_type, row.plugin
        model_id, bundle, version = model.id, model.bundle_path, model.version
        # The query text stands for every text input: the search compares the one it needs
        # (the first text input, or the aligned space's).
        text_fields = search.text_modalities(model) if text is not None else []
    status, vectors, error = "succeeded", None, None
    try:
        predictor = ctx.models.get(model_id, bundle, version)
        raw = RawInput(image_bytes=image, media_type=media_type, texts={field: text for field in text_fields}, metadata={})
        sample = get_plugin(plugin_name).prepare(raw)
        prediction = predictor.predict_encoded([predictor.preprocess(sample)], contributions=False)[0]
        vectors = {kind: [float(x) for x in value] for kind, value in prediction.embeddings.items()}
    except InputError as exc:
        status, error = "failed", exc.reason
    except Exception as exc:
        log.exception("embedding search query %s failed", query_id)
        status, error = "failed", f"the model failed on this query: {exc.__class__.__name__}"
    with ctx.db.session() as session:
        row = EmbeddingRepository(session).query(uuid.UUID(query_id))
        if row is not None:
            row.status, row.vectors, row.error = status, vectors, error
    return status


def build_scope_index(scope_key: str, context: WorkerContext | None = None) -> int:
    """Build the FAISS index of one scope ("tenant/model_version/kind"); how many rows."""
    ctx = context or get_context()
    tenant, model, kind = scope_key.split("/", 2)
    scope = VectorScope(uuid.UUID(tenant), uuid.UUID(model), kind)
    with ctx.db.session() as session:
        if kind == search.ALIGNED_IMAGE:
            space = EmbeddingRepository(session).alignment(scope.tenant_id, scope.model_version_id)
            if space is None:
                return 0
            record = search_index.build_index(session, scope, ctx.settings, transform=search.aligned_space(space).image,
                                              source_kind="image")
        else:
            record = search_index.build_index(session, scope, ctx.settings)
        built = record.rows if record is not None else 0
    log.info("search index %s: %d vectors", scope_key, built)
    return built


def request_index_builds(ctx: WorkerContext) -> int:
    """The sweep's part: ask for a build of every scope past exact search whose index is
    missing or behind; drop queries whose request gave up. How many builds were asked."""
    settings = ctx.settings
    wanted: list[tuple[str, str]] = []
    with ctx.db.session() as session:
        search.drop_stale_queries(session, settings)
        repo = EmbeddingRepository(session)
        for scope in repo.scopes_with_at_least(settings.search_exact_max_rows + 1):
            model = session.get(ModelVersion, scope.model_version_id)
            kinds = [scope.kind]
            if scope.kind == "image" and repo.alignment(scope.tenant_id, scope.model_version_id) is not None:
                kinds.append(search.ALIGNED_IMAGE)
            for kind in kinds:
                if _behind(repo, scope, kind, settings.search_rebuild_after_rows):
                    wanted.append((f"{scope.tenant_id}/{scope.model_version_id}/{kind}", model.plugin))
    for key, plugin in wanted:
        publish_search_task(search.BUILD_INDEXES_TASK, key, plugin)
    return len(wanted)


def _behind(repo: EmbeddingRepository, scope: VectorScope, kind: str, rebuild_after: int) -> bool:
    index = repo.index(VectorScope(scope.tenant_id, scope.model_version_id, kind))
    if index is None:
        return True
    count, _ = repo.count(scope)
    return count - index.rows >= rebuild_after or count < index.rows


# -- training runs of kind "align" -------------------------------------------------------------------


def run_align(ctx: WorkerContext, claimed: training.ClaimedRun) -> str | None:
    """Embed the run's (photo, text) pairs with its model version, train the maps, write
    the folder, store the space. Returns the run's final status."""
    try:
        with ctx.db.session() as session:
            job = alignment.align_job(session, claimed.id, claimed.attempt, claimed.tenant_id, claimed.request)
        result = _train_space(ctx, job, claimed.plugin)
        with ctx.db.session() as session:
            done = alignment.complete_align_run(session, job, result.arrays, result.config)
        return "succeeded" if done else None
    except Exception as exc:  # the run records why; no space is half-stored
        log.warning("alignment run %s failed: %s", claimed.id, exc, exc_info=not isinstance(exc, TwinLensError))
        with ctx.db.session() as session:
            training.fail_run(session, claimed, training.describe_failure(exc))
        return "failed"


def _train_space(ctx: WorkerContext, job: alignment.AlignJob, plugin_name: str) -> Any:
    from twinlens.engine.align import AlignOptions, align_model

    plugin = get_plugin(plugin_name)
    dataset = plugin.read_dataset(job.data_path)
    options = AlignOptions(dim=job.dim, epochs=job.epochs, text_field=job.text_field)
    # Its own copy of the model, not the worker's cached one: prediction batches run that one
    # on another thread meanwhile, and a transformers text encoder is not safe to run from
    # two threads at once (a CI run failed on a batch-size mismatch inside BERT's embeddings).
    return align_model(job.bundle_path, dataset.samples, job.output_dir, options)
