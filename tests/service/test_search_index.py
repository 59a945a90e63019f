"""Search indexes for large tenants: a worker builds a FAISS index from the SQL rows once a
scope outgrows exact search; searches through it agree with exact search, see rows stored
after the build, and never return a purged case; the purge deletes the index file."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from twinlens import queue
from twinlens.db.base import utcnow
from twinlens.db.embedding_tables import CaseEmbedding, SearchIndex
from twinlens.db.migrate import upgrade
from twinlens.db.models import Job, ModelVersion, Result, Tenant
from twinlens.db.repositories.embeddings import CaseFilters, VectorScope
from twinlens.db.session import Database
from twinlens.services import case_embeddings
from twinlens.services.search_index import exact_ranking, ranked
from twinlens.settings import Settings
from twinlens.worker import search_tasks
from twinlens.worker.context import WorkerContext

DIM = 16


class Recorder:
    """Stands in for the in-process worker: records the search tasks published."""

    def __init__(self):
        self.tasks: list[tuple[str, str]] = []

    def submit_search_task(self, task: str, argument: str) -> None:
        self.tasks.append((task, argument))


@pytest.fixture
def world(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, search_exact_max_rows=100, search_rebuild_after_rows=20)
    db = Database(settings.resolved_database_url)
    upgrade(db.engine)
    with db.session() as session:
        tenant = Tenant(name="big")
        model = ModelVersion(plugin="generic", version="generic@test", bundle_path="/nowhere", content_hash="x", label_schema={})
        session.add_all([tenant, model])
        session.flush()
        ids = (tenant.id, model.id)
    yield settings, db, WorkerContext.from_settings(settings, db=db), ids
    db.dispose()


def _add_cases(db: Database, tenant_id, model_id, vectors: np.ndarray) -> list[uuid.UUID]:
    job_ids = []
    with db.session() as session:
        for vector in vectors:
            job = Job(tenant_id=tenant_id, plugin="generic", model_version_id=model_id, status="succeeded", finished_at=utcnow())
            session.add(job)
            session.flush()
            session.add(Result(job_id=job.id, model_version_id=model_id, model_version="generic@test", heads={}, decision={}))
            case_embeddings.store_for_job(session, job.id, model_id, {"fused": vector})
            job_ids.append(job.id)
    return job_ids


def test_a_large_scope_is_indexed_by_a_worker_and_searched_through_the_index(world):
    settings, db, ctx, (tenant_id, model_id) = world
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(8, DIM))[rng.integers(0, 8, 300)] + rng.normal(size=(300, DIM)) * 0.3).astype(np.float32)
    job_ids = _add_cases(db, tenant_id, model_id, vectors)
    scope = VectorScope(tenant_id, model_id, "fused")

    recorder = Recorder()
    previous = queue.local_consumer()
    queue.set_local_consumer(recorder)
    try:
        assert search_tasks.request_index_builds(ctx) == 1  # 300 rows > 100: the sweep asks for a build
    finally:
        queue.set_local_consumer(previous)
    (task, key), = recorder.tasks
    assert search_tasks.run_search_task(task, key, ctx) == 300
    with db.session() as session:
        index = session.query(SearchIndex).one()
        assert index.rows == 300 and Path(index.path).is_file()
        index_path = index.path

    query = vectors[7] + 0.01
    exact = [hit.job_id for hit in exact_ranking(query, job_ids, vectors)[:10]]
    with db.session() as session:
        hits, was_exact = ranked(session, scope, query, 10, CaseFilters())
    assert not was_exact and len(set(hit.job_id for hit in hits[:10]) & set(exact)) >= 9

    # A case stored after the build is found (exactly, from SQL), a purged one never again.
    (newest,) = _add_cases(db, tenant_id, model_id, (query + 0.001)[None, :])
    with db.session() as session:
        hits, was_exact = ranked(session, scope, query, 10, CaseFilters())
        assert not was_exact and hits[0].job_id == newest
        case_embeddings.forget_job(session, session.get(Job, job_ids[7]))
    assert not Path(index_path).exists() and not Path(index_path).with_suffix(".ids.json").exists()
    with db.session() as session:
        assert session.query(SearchIndex).count() == 0
        assert session.query(CaseEmbedding).filter(CaseEmbedding.job_id == job_ids[7]).count() == 0
        hits, was_exact = ranked(session, scope, query, 10, CaseFilters())
    assert was_exact and job_ids[7] not in {hit.job_id for hit in hits}


def test_a_small_scope_stays_exact(world):
    settings, db, ctx, (tenant_id, model_id) = world
    _add_cases(db, tenant_id, model_id, np.random.default_rng(1).normal(size=(50, DIM)).astype(np.float32))
    recorder = Recorder()
    previous = queue.local_consumer()
    queue.set_local_consumer(recorder)
    try:
        assert search_tasks.request_index_builds(ctx) == 0
    finally:
        queue.set_local_consumer(previous)
    assert recorder.tasks == []
