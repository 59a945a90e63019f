"""The FastAPI application factory.

`create_app` wires settings, database and blob store into the app; it starts no worker
(the API never imports the worker): `twinlens serve` starts the in-process worker next to
it when no broker is configured.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from twinlens import __version__, queue
from twinlens.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from twinlens.api.openapi_docs import install_openapi
from twinlens.api.problems import install_problem_handlers
from twinlens.api.routes import health, jobs, keys, models, plugins, training
from twinlens.blobs import LocalBlobStore
from twinlens.db.session import Database
from twinlens.services.bootstrap import bootstrap
from twinlens.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Turn a photo or scan plus its text into a decision. Submit jobs per plugin, read results "
    "(each names the model version that made it), send corrections, receive signed webhooks. "
    "Errors are RFC 9457 application/problem+json."
)


def create_app(settings: Settings | None = None, *, db: Database | None = None, blobs: LocalBlobStore | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings.resolved_database_url)
    blobs = blobs or LocalBlobStore(settings.resolved_blob_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.configure(settings.broker_url)
        with db.session() as session:
            bootstrap(session, settings)
        yield

    app = FastAPI(title="TwinLens", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings, app.state.db, app.state.blobs = settings, db, blobs
    for router in (jobs.router, models.router, training.router, plugins.router, keys.router, health.router):
        app.include_router(router)
    install_problem_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware)
    return app
