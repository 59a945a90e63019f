"""A Celery worker's own Prometheus endpoint.

In broker mode the jobs run in the worker processes, so their batch sizes, stage timings
and finished counts live there, not in the API's /metrics. Each worker serves them on
`worker_metrics_port` (loopback unless `worker_metrics_host` says otherwise). With
`TWINLENS_METRICS_TOKEN` set, a scrape must send it as a bearer token, as the API's
/metrics asks; a port already taken costs the metrics, never the worker.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from twinlens.settings import Settings

log = logging.getLogger(__name__)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds up the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the stdlib's name)
        pass  # one line per scrape would drown the worker's log


def serve_metrics(settings: Settings) -> WSGIServer | None:
    """Start serving on a daemon thread; None when turned off or the port is taken."""
    if not settings.worker_metrics_port:
        return None
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app = _require_token(make_wsgi_app(), token) if token else make_wsgi_app()
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    try:
        server = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        log.error("worker metrics not served on %s:%d: %s", host, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="twinlens-metrics", daemon=True).start()
    log.info("worker metrics on http://%s:%d/metrics%s", host, port, " (bearer token required)" if token else "")
    return server


def _require_token(app, token: str):
    expected = f"Bearer {token}".encode()
    refusal = json.dumps({"type": "about:blank", "title": "Unauthorized", "status": 401,
                          "detail": "send TWINLENS_METRICS_TOKEN as `Authorization: Bearer <token>`"}).encode()

    def guarded(environ, start_response):
        if secrets.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "application/problem+json"), ("WWW-Authenticate", "Bearer"),
                                            ("Content-Length", str(len(refusal)))])
        return [refusal]

    return guarded
