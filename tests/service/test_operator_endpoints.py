"""/metrics and the details of /readyz are for operators: TWINLENS_METRICS_TOKEN or an
admin API key, sent as a bearer token. Anyone else gets 401 from /metrics and only
ready / not ready from /readyz; /livez stays open."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet
from service_db import fresh_database, service_settings
from service_helpers import problem

from twinlens.cli.service import EmbeddedService
from twinlens.settings import Settings

METRICS_TOKEN = "tl-metrics-" + uuid.uuid4().hex + uuid.uuid4().hex
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def _get(url: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}{path}", headers=headers, timeout=30)


def _shows_details(answer: httpx.Response) -> bool:
    return bool(answer.json().get("checks"))


# -- the live service: no metrics token configured, admin keys are operators ------------------
def test_livez_is_open_to_anyone(live):
    assert _get(live.url, "/livez").json()["status"] == "ok"


def test_metrics_need_an_operator(live):
    tenant_key = live.new_tenant_key()
    for token in (None, tenant_key, "tl_not_a_key_at_all", METRICS_TOKEN):  # no token is configured here
        refused = _get(live.url, "/metrics", token)
        problem(refused, 401)
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert "twinlens_" not in refused.text
    scraped = _get(live.url, "/metrics", live.admin_key)
    assert scraped.status_code == 200 and "twinlens_http_requests_total" in scraped.text


def _wait_ready(live) -> None:
    """Ready once the worker holds the model: a first job loads it if preloading has not yet."""
    with live.client() as client:
        client.post("/v1/plugins/generic/jobs", params={"wait": 30}, json={"inputs": {"text": "warm up"}})
    deadline = time.monotonic() + 30
    while _get(live.url, "/readyz").status_code != 200:
        assert time.monotonic() < deadline, _get(live.url, "/readyz", live.admin_key).text
        time.sleep(0.2)


def test_readyz_tells_anyone_ready_and_only_operators_why(live):
    _wait_ready(live)
    anonymous, tenant = _get(live.url, "/readyz"), _get(live.url, "/readyz", live.new_tenant_key())
    operator = _get(live.url, "/readyz", live.admin_key)
    for answer in (anonymous, tenant):
        assert answer.status_code == 200 and answer.json()["status"] == "ready", operator.text
        assert not _shows_details(answer)
        assert "@" not in answer.text  # no model version (plugin@hash) leaks
    assert operator.status_code == 200 and operator.json()["checks"]["models"]["active"]
    assert operator.json()["checks"]["worker"]["ok"] is True


def test_openapi_documents_the_operator_token(live):
    document = _get(live.url, "/openapi.json").json()
    assert "401" in document["paths"]["/metrics"]["get"]["responses"]
    assert document["components"]["securitySchemes"]["OperatorToken"]["scheme"].lower() == "bearer"


# -- a service with TWINLENS_METRICS_TOKEN and no model yet (not ready) -----------------------
@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def with_metrics_token(request, tmp_path_factory) -> Iterator[str]:
    """A database of its own on PostgreSQL too: live's has an active model."""
    data_dir = tmp_path_factory.mktemp(f"metrics-token-{request.param}")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database()) if request.param == "postgresql" else f"sqlite:///{data_dir / 'db.sqlite'}"
        service = EmbeddedService(service_settings(data_dir, url, metrics_token=METRICS_TOKEN), port=0).build(migrate=True).start()
        stack.callback(service.close)
        yield service.url


def test_the_metrics_token_lets_prometheus_scrape(with_metrics_token):
    scraped = httpx.get(f"{with_metrics_token}/metrics", timeout=30,
                        headers={"Authorization": f"Bearer {METRICS_TOKEN}", "Accept": PROMETHEUS_ACCEPT})
    assert scraped.status_code == 200 and "# TYPE twinlens_jobs gauge" in scraped.text
    for token in (None, METRICS_TOKEN[:-1], METRICS_TOKEN + "x"):
        problem(_get(with_metrics_token, "/metrics", token), 401)


def test_not_ready_says_which_check_fails_only_to_the_token(with_metrics_token):
    anonymous = problem(_get(with_metrics_token, "/readyz"), 503)
    operator = problem(_get(with_metrics_token, "/readyz", METRICS_TOKEN), 503)
    assert "checks" not in anonymous and "models" not in anonymous["detail"]
    assert operator["checks"]["models"]["ok"] is False and "models" in operator["detail"]


def test_production_refuses_a_short_metrics_token(tmp_path):
    production = dict(env="production", data_dir=tmp_path, secrets_key=Fernet.generate_key().decode())
    with pytest.raises(ValueError, match="TWINLENS_METRICS_TOKEN"):  # pydantic's ValidationError wraps it
        Settings(**production, metrics_token="short")
    assert Settings(**production, metrics_token=METRICS_TOKEN).metrics_token is not None
    assert Settings(env="development", data_dir=tmp_path, metrics_token="short").metrics_token is not None
