"""Per-process worker state: settings, database, blob store and the model cache."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from twinlens.blobs import LocalBlobStore
from twinlens.db.session import Database
from twinlens.settings import Settings, get_settings
from twinlens.worker.model_cache import ModelCache


@dataclass
class WorkerContext:
    settings: Settings
    db: Database
    blobs: LocalBlobStore
    models: ModelCache

    @classmethod
    def from_settings(cls, settings: Settings, db: Database | None = None, blobs: LocalBlobStore | None = None) -> "WorkerContext":
        return cls(
            settings=settings,
            db=db or Database(settings.resolved_database_url),
            blobs=blobs or LocalBlobStore(settings.resolved_blob_dir),
            models=ModelCache(runtime=settings.runtime, settings=settings),
        )


_lock = threading.Lock()
_context: WorkerContext | None = None


def get_context() -> WorkerContext:
    """The process's context, built from settings on first use (Celery worker processes)."""
    global _context
    with _lock:
        if _context is None:
            _context = WorkerContext.from_settings(get_settings())
        return _context


def set_context(context: WorkerContext | None) -> None:
    global _context
    with _lock:
        _context = context
