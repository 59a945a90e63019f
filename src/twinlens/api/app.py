"""The FastAPI application factory.

`create_app` wires settings, database and blob store into the app; it starts no worker
(the API never imports the worker): `twinlens serve` starts the in-process worker next to
it when no broker is configured.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from twinlens import __version__, queue
from twinlens.api.middleware import BodyLimitMiddleware, MetricsMiddleware, RateLimitHeadersMiddleware, enforce_rate_limit
from twinlens.api.openapi_docs import install_openapi
from twinlens.api.outages import install_outage_handlers
from twinlens.api.problems import install_problem_handlers, problem_responses
from twinlens.api.routes import health, jobs, keys, models, plugins, training, webhook_deliveries
from twinlens.api.request_context import RequestContextMiddleware
from twinlens.api.routes import audit, subjects
from twinlens.api.routes import learning
from twinlens.api.routes import connectors
from twinlens.api.routes import batches
from twinlens.api.routes import search
from twinlens.api.routes import explanations
from twinlens.blobs import LocalBlobStore
from twinlens.console import install_console
from twinlens.db.session import Database
from twinlens.logging_setup import configure_logging
from twinlens.services.bootstrap import bootstrap
from twinlens.services.rate_limits import RateLimiter
from twinlens.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Turn a photo or scan plus its text into a decision. Submit jobs per plugin, read results "
    "(each names the model version that made it), send corrections, receive signed webhooks. "
    "Errors are RFC 9457 application/problem+json."
)

# One tag per router, given here: a generated client puts each tag's operations in a module
# of its own (api/jobs/create_job.py), so this table is that client's layout.
ROUTERS: tuple[tuple[str, APIRouter, str], ...] = (
    ("jobs", jobs.router, "Submit jobs to a plugin, read their results, correct them, follow their webhooks"),
    ("models", models.router, "Model versions: list, register a bundle, activate"),
    ("training", training.router, "Training runs that produce new model versions (admin)"),
    ("learning", learning.router, "The learning loop: corrections as data, holdouts, the evaluation gate, promotion and "
                                  "rollback, shadow mode, drift (docs/learning-loop.md)"),
    ("batches", batches.router, "Bulk scoring: a JSONL/CSV file of inputs scored by workers, its progress and answers"),
    ("search", search.router, "Similar past cases and search by text or image, within the tenant; aligned image-text "
                              "spaces (docs/search.md)"),
    ("explanations", explanations.router, "Why a result is what it is: image heatmaps and word weights "
                                          "(docs/explanations.md)"),
    ("plugins", plugins.router, "Installed plugins and what their jobs take and give"),
    ("keys", keys.router, "API keys and the caller's tenant"),
    ("webhooks", webhook_deliveries.router, "The tenant's webhook deliveries: dead letters and redelivery"),
    ("connectors", connectors.router, "Helpdesk connectors (Zendesk, Freshdesk): configure them, read their event logs (admin)"),
    ("connector-intake", connectors.intake_router, "Where a helpdesk's webhooks arrive: signed or with the connector's secret, no API key"),
    ("subjects", subjects.router, "Erasure requests: everything the tenant holds about one subject (admin)"),
    ("audit", audit.router, "The tenant's audit log (admin)"),
    ("health", health.router, "Liveness, readiness and Prometheus metrics"),
)
# Routers with routes open to anyone, so no key to rate-limit by (/metrics has its own
# token). Every other router's requests need a key and spend the key's and the tenant's
# rate-limit tokens: a router added later is limited unless it is named here.
OPEN_TAGS = frozenset({"plugins", "health", "connector-intake"})


def operation_id(route: APIRoute) -> str:
    """The route function's name (create_job): it names the generated client's function and
    module, and unlike FastAPI's default it does not change when a URL or method does."""
    return route.name


def create_app(settings: Settings | None = None, *, db: Database | None = None, blobs: LocalBlobStore | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings.resolved_database_url)
    blobs = blobs or LocalBlobStore(settings.resolved_blob_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(settings.env)
        queue.configure(settings.broker_url)
        with db.session() as session:
            bootstrap(session, settings)
        yield
        app.state.rate_limiter.close()

    app = FastAPI(
        title="TwinLens", version=__version__, description=DESCRIPTION, lifespan=lifespan,
        openapi_tags=[{"name": tag, "description": about} for tag, _, about in ROUTERS],
        generate_unique_id_function=operation_id,
    )
    app.state.settings, app.state.db, app.state.blobs = settings, db, blobs
    app.state.rate_limiter = RateLimiter.from_settings(settings)
    _include_routers(app)
    install_console(app)  # the web console under /console (HTML, not in the OpenAPI document)
    install_problem_handlers(app)
    install_outage_handlers(app)
    install_openapi(app, settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes, bulk_max_bytes=settings.max_bulk_request_bytes)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)
    # Outermost, so every line of the request, even a refused one's, carries its request id.
    app.add_middleware(RequestContextMiddleware)
    return app


def _include_routers(app: FastAPI) -> None:
    for tag, router, _ in ROUTERS:
        # A router that names the tag itself would otherwise list it twice.
        app.include_router(router, tags=None if tag in router.tags else [tag],
                           dependencies=None if tag in OPEN_TAGS else [Depends(enforce_rate_limit)],
                           responses=None if tag in OPEN_TAGS else problem_responses(429))
    _require_unique_operation_ids([route for _, router, _ in ROUTERS for route in router.routes if isinstance(route, APIRoute)])


def _require_unique_operation_ids(routes: list[APIRoute]) -> None:
    """Two route functions of one name would give two operations one id (FastAPI only
    warns); a generated client would keep one of them."""
    seen: dict[str, str] = {}
    for route in routes:
        for method in sorted(route.methods):
            name = operation_id(route)
            if name in seen:
                raise RuntimeError(f"operationId {name!r} is used by {seen[name]} and {method} {route.path}: rename a route function")
            seen[name] = f"{method} {route.path}"
