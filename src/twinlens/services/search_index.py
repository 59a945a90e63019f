"""Nearest vectors: exact (numpy over the SQL rows) or through a FAISS index a worker built.

Exact search is a matrix product over the scope's rows, cosine similarity on
L2-normalised vectors: exact and fast enough for a tenant's first tens of thousands of
cases (`search_exact_max_rows`). Past that a worker builds an HNSW index (FAISS, inner
product on the normalised vectors, so the same cosine score) into
`search_index_dir` and records it in `search_indexes` with the time of the newest row it
covers. A search reads the file (the API process loads faiss, which does not import
torch), adds the rows stored after that time exactly, and drops hits whose job has no
vector any more (deleted or purged since the build). Filtered searches (date, plugin,
corrected-only, label) run exactly over the filtered rows, which keeps them exact.

Index files are written next to their final name and renamed into place, so a reader
never sees half a file; a replaced file is deleted after its record changes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from twinlens.db.base import utcnow
from twinlens.db.embedding_tables import SearchIndex
from twinlens.db.repositories.embeddings import CaseFilters, EmbeddingRepository, VectorScope
from twinlens.db.session import after_commit
from twinlens.services.case_embeddings import delete_index_files, matrix_of
from twinlens.settings import Settings

log = logging.getLogger(__name__)
HNSW_NEIGHBOURS = 32
HNSW_SEARCH_DEPTH = 128
# Extra hits asked of the index, for those dropped because their job is gone.
OVERFETCH = 2.0
_CACHE_SIZE = 16

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Hit:
    job_id: uuid.UUID
    score: float


def normalised(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def exact_ranking(query: np.ndarray, job_ids: Sequence[uuid.UUID], matrix: np.ndarray) -> list[Hit]:
    """Every row, best first (cosine similarity)."""
    if not len(job_ids):
        return []
    scores = normalised(matrix) @ normalised(query.reshape(1, -1))[0]
    order = np.argsort(-scores, kind="stable")
    return [Hit(job_ids[i], float(scores[i])) for i in order]


def ranked(session: Session, scope: VectorScope, query: np.ndarray, k: int, filters: CaseFilters, *,
           transform: Transform | None = None, index_kind: str | None = None, exhaustive: bool = False) -> tuple[list[Hit], bool]:
    """The scope's nearest rows to `query`, and whether the search was exact. `transform`
    maps stored vectors first (the image side of an aligned space); `index_kind` names the
    index built over the transformed vectors. `exhaustive`: every row ranked, exactly
    (the caller filters further)."""
    repo = EmbeddingRepository(session)
    index = None if (filters.any or exhaustive) else repo.index(VectorScope(scope.tenant_id, scope.model_version_id, index_kind or scope.kind))
    if index is not None:
        hits = _through_index(session, scope, index, query, k, filters, transform)
        if hits is not None:
            return hits, False
    job_ids, matrix = matrix_of(repo.vectors(scope, filters))
    if transform is not None and len(job_ids):
        matrix = transform(matrix)
    if len(job_ids) and matrix.shape[1] != query.shape[-1]:
        return [], True
    return exact_ranking(query, job_ids, matrix), True


def _through_index(session: Session, scope: VectorScope, index: SearchIndex, query: np.ndarray, k: int, filters: CaseFilters,
                   transform: Transform | None) -> list[Hit] | None:
    loaded = load_index(index.path)
    if loaded is None:
        return None  # the file is gone (a purge, a restore): search exactly
    faiss_index, ids = loaded
    wanted = min(len(ids), int(k * OVERFETCH) + 1 + (1 if filters.exclude_job else 0))
    scores, positions = faiss_index.search(normalised(query.reshape(1, -1)), wanted)
    hits = [Hit(ids[p], float(s)) for s, p in zip(scores[0], positions[0]) if p >= 0]
    repo = EmbeddingRepository(session)
    newer_ids, newer = matrix_of(repo.vectors(scope, filters, after=index.covers_through))
    if transform is not None and len(newer_ids):
        newer = transform(newer)
    hits += exact_ranking(query, newer_ids, newer)[:k + 1]
    alive = repo.existing_jobs(scope, [hit.job_id for hit in hits], filters)
    best: dict[uuid.UUID, Hit] = {}
    for hit in hits:
        if hit.job_id in alive and (hit.job_id not in best or hit.score > best[hit.job_id].score):
            best[hit.job_id] = hit
    return sorted(best.values(), key=lambda hit: -hit.score)


# -- building (the worker's side) ----------------------------------------------------------------


def build_index(session: Session, scope: VectorScope, settings: Settings, *, transform: Transform | None = None,
                source_kind: str | None = None) -> SearchIndex | None:
    """(Re)build the scope's FAISS index from its SQL rows (`source_kind`'s rows mapped by
    `transform` for an aligned space); None when there is nothing to index."""
    import faiss

    repo = EmbeddingRepository(session)
    source = VectorScope(scope.tenant_id, scope.model_version_id, source_kind or scope.kind)
    through = utcnow()
    rows = repo.vectors(source, through=through)
    job_ids, matrix = matrix_of(rows)
    if not job_ids:
        return None
    if transform is not None:
        matrix = transform(matrix)
    index = faiss.IndexHNSWFlat(matrix.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_SEARCH_DEPTH
    index.add(normalised(matrix))
    path = _write(settings.resolved_search_index_dir, scope, index, job_ids)
    covers = max(row.created_at for row in rows)
    record = repo.index(scope)
    old = record.path if record is not None else None
    if record is None:
        record = SearchIndex(tenant_id=scope.tenant_id, model_version_id=scope.model_version_id, kind=scope.kind, path=path,
                             rows=len(job_ids), covers_through=covers, backend="faiss")
        session.add(record)
    else:
        record.path, record.rows, record.covers_through, record.built_at = path, len(job_ids), covers, utcnow()
    session.flush()
    if old and old != path:
        after_commit(session, lambda: delete_index_files([old]))
    return record


def _write(root: Path, scope: VectorScope, index: Any, job_ids: list[uuid.UUID]) -> str:
    import faiss

    folder = root / str(scope.tenant_id) / str(scope.model_version_id)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{_safe(scope.kind)}.{uuid.uuid4().hex[:12]}"
    final = folder / f"{name}.faiss"
    for target, write in ((final.with_suffix(".ids.json"), lambda p: p.write_text(json.dumps([str(i) for i in job_ids]))),
                          (final, lambda p: faiss.write_index(index, str(p)))):
        staged = target.with_name(target.name + ".partial")
        write(staged)
        os.replace(staged, target)
    return str(final)


def _safe(kind: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in kind)


# -- loading (any process) ------------------------------------------------------------------------

_cache: OrderedDict[str, tuple[Any, list[uuid.UUID]]] = OrderedDict()
_cache_lock = threading.Lock()


def load_index(path: str) -> tuple[Any, list[uuid.UUID]] | None:
    """The FAISS index and its job ids (cached by path: a rebuild writes a new path)."""
    with _cache_lock:
        if path in _cache:
            _cache.move_to_end(path)
            return _cache[path]
    try:
        import faiss

        ids = [uuid.UUID(value) for value in json.loads(Path(path).with_suffix(".ids.json").read_text())]
        index = faiss.read_index(path)
        index.hnsw.efSearch = HNSW_SEARCH_DEPTH
    except (OSError, ValueError, RuntimeError):
        log.warning("search index %s cannot be read; searching exactly", path)
        return None
    with _cache_lock:
        _cache[path] = (index, ids)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return index, ids
