"""Case embeddings in SQL: written with each job's result, read by search, forgotten with
the job's inputs.

A worker hands the vectors its predictor gave with the prediction (engine/embeddings.py)
to `store_for_job`, inside the transaction that writes the result, so a result never
exists without its vectors nor the vectors without a result. The retention purge and
the erasures call `forget_job` / `forget_indexes`: an embedding is derived from the
inputs (an image vector can find its photo's look-alikes), so it goes with them, and so
does every FAISS file that holds a copy of it (the next rebuild leaves it out).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from twinlens.db.embedding_tables import CaseEmbedding
from twinlens.db.models import Job
from twinlens.db.repositories.embeddings import EmbeddingRepository, VectorRow
from twinlens.db.session import after_commit

log = logging.getLogger(__name__)
FUSED = "fused"


def to_bytes(vector: Any) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def matrix_of(rows: Iterable[VectorRow]) -> tuple[list[uuid.UUID], np.ndarray]:
    """(job ids, float32 matrix) of stored rows; rows of another dimension are skipped."""
    rows = list(rows)
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    dim = rows[-1].dim
    kept = [row for row in rows if row.dim == dim]
    data = np.frombuffer(b"".join(row.vector for row in kept), dtype="<f4").reshape(len(kept), dim)
    return [row.job_id for row in kept], data.astype(np.float32)


def store_for_job(session: Session, job_id: uuid.UUID, model_version_id: uuid.UUID, embeddings: Mapping[str, Any]) -> int:
    """Write a finished job's vectors (kind -> float vector); how many were written. Called
    in the transaction that writes the job's result."""
    job = session.get(Job, job_id)
    if job is None or not embeddings:
        return 0
    rows = []
    for kind, vector in embeddings.items():
        values = np.asarray(vector, dtype=np.float32).reshape(-1)
        if values.size == 0 or not np.isfinite(values).all():
            log.warning("job %s: its %s embedding is empty or not finite; not stored", job_id, kind)
            continue
        rows.append(CaseEmbedding(job_id=job_id, tenant_id=job.tenant_id, model_version_id=model_version_id, plugin=job.plugin,
                                  kind=str(kind), dim=int(values.size), vector=to_bytes(values)))
    EmbeddingRepository(session).add_many(rows)
    return len(rows)


def forget_job(session: Session, job: Job, index_dir: Path | None = None) -> None:
    """The job's vectors go, and with them every search index of its tenant and model
    version (their files hold copies; the worker rebuilds them without the job)."""
    repo = EmbeddingRepository(session)
    if repo.delete_for_job(job.id):
        forget_indexes(session, job.tenant_id, job.model_version_id)


def forget_indexes(session: Session, tenant_id: uuid.UUID, model_version_id: uuid.UUID | None = None) -> int:
    """Drop the tenant's search index records (of one model version, or all) and, once
    committed, their files. Searches fall back to exact search over SQL until rebuilt."""
    repo = EmbeddingRepository(session)
    paths: list[str] = []
    for index in repo.indexes_of(tenant_id, model_version_id):
        paths.append(index.path)
        repo.delete_index(index)
    if paths:
        after_commit(session, lambda: delete_index_files(paths))
    return len(paths)


def delete_index_files(paths: Iterable[str]) -> None:
    for path in paths:
        for file in (Path(path), Path(path).with_suffix(".ids.json")):
            try:
                file.unlink(missing_ok=True)
            except OSError:
                log.warning("could not delete search index file %s", file, exc_info=True)
