"""The connector contract without the service: another package's connector is found through
the `twinlens.connectors` entry points; the helpdesks' payloads parse as documented;
signatures and secrets are checked; Retry-After reads as seconds or a date; the transport
refuses hosts that are not the helpdesk's and refuses private addresses unless allowed."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from fake_helpdesks import zendesk_headers

from twinlens.connectors import notes, registry
from twinlens.connectors.contract import (
    Connector,
    ConnectorError,
    EventIgnored,
    FieldMapping,
    HelpdeskError,
    IntakeRefused,
)
from twinlens.connectors.freshdesk import FreshdeskConnector
from twinlens.connectors.zendesk import ZendeskConnector
from twinlens.contract.errors import InputError
from twinlens.services.connectors_http import GuardedTransport, retry_after_seconds
from twinlens.settings import Settings


@pytest.fixture
def installed_package(tmp_path, monkeypatch):
    """A connector package as pip would install it: a module and a dist-info with the entry point."""
    (tmp_path / "acme_helpdesk.py").write_text(textwrap.dedent('''
        from twinlens.connectors.zendesk import ZendeskConnector

        class AcmeConnector(ZendeskConnector):
            name = "acme"
            title = "Acme Desk"
    '''))
    info = tmp_path / "acme_helpdesk-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-helpdesk\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[twinlens.connectors]\nacme = acme_helpdesk:AcmeConnector\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._declared.cache_clear()
    registry.get_connector.cache_clear()
    yield
    sys.modules.pop("acme_helpdesk", None)
    registry._declared.cache_clear()
    registry.get_connector.cache_clear()


def test_a_connector_package_is_found_through_the_entry_points(installed_package):
    assert {"acme", "freshdesk", "zendesk"} <= set(registry.connector_names())
    connector = registry.get_connector("acme")
    assert isinstance(connector, Connector) and connector.title == "Acme Desk"
    with pytest.raises(InputError, match="unknown connector 'helpscout'"):
        registry.get_connector("helpscout")


def test_zendesk_signatures_are_checked_on_the_raw_body_and_the_timestamp():
    zendesk, body, credentials = ZendeskConnector(), b'{"ticket_id": "12"}', {"webhook_secret": "s3cret"}
    now = datetime.now(timezone.utc)
    zendesk.verify(zendesk_headers("s3cret", body), body, credentials, now, 300)
    for headers, message in ((zendesk_headers("other", body), "does not match"),
                             (zendesk_headers("s3cret", body, sent=now - timedelta(seconds=301)), "away from now"),
                             (zendesk_headers("s3cret", body, sent=now + timedelta(seconds=301)), "away from now"),
                             ({}, "carries no")):
        with pytest.raises(IntakeRefused, match=message):
            zendesk.verify(headers, body, credentials, now, 300)
    with pytest.raises(IntakeRefused):
        zendesk.verify(zendesk_headers("s3cret", body), body + b" ", credentials, now, 300)


def test_zendesk_payloads_name_the_ticket_and_the_triggering_comment():
    zendesk = ZendeskConnector()
    assert zendesk.parse_event({"ticket_id": "12"}).ticket_id == "12"
    assert zendesk.parse_event({"ticket": {"id": 12}, "comment_id": 99}).trigger_id == "99"
    created = zendesk.parse_event({"type": "zen:event-type:ticket.created", "detail": {"id": "31"}, "subject": "zen:ticket:31"})
    assert (created.ticket_id, created.trigger_id) == ("31", None)
    comment = zendesk.parse_event({"type": "zen:event-type:ticket.comment_added", "subject": "zen:ticket:31",
                                   "event": {"comment": {"id": 5, "is_public": True}}})
    assert (comment.ticket_id, comment.trigger_id) == ("31", "5")
    with pytest.raises(EventIgnored):
        zendesk.parse_event({"type": "zen:event-type:ticket.comment_added", "detail": {"id": "31"},
                             "event": {"comment": {"id": 6, "is_public": False}}})
    with pytest.raises(EventIgnored):
        zendesk.parse_event({"type": "zen:event-type:ticket.status_changed", "detail": {"id": "31"}})
    for bad in ({}, {"ticket_id": "{{ticket.id}}"}, {"ticket_id": True}, []):
        with pytest.raises(ConnectorError):
            zendesk.parse_event(bad)


def test_freshdesk_secrets_are_compared_and_payloads_parsed():
    freshdesk, credentials = FreshdeskConnector(), {"api_key": "k", "webhook_secret": "right"}
    now = datetime.now(timezone.utc)
    freshdesk.verify({"x-twinlens-secret": "right"}, b"{}", credentials, now, 300)
    freshdesk.verify({"authorization": "Basic " + base64.b64encode(b"fd:right").decode()}, b"{}", credentials, now, 300)
    for headers in ({"x-twinlens-secret": "wrong"}, {}, {"authorization": "Basic !!"}, {"authorization": "Bearer right"}):
        with pytest.raises(IntakeRefused):
            freshdesk.verify(headers, b"{}", credentials, now, 300)
    assert freshdesk.parse_event({"freshdesk_webhook": {"ticket_id": 8}}).ticket_id == "8"
    assert freshdesk.parse_event({"ticket_id": "8", "conversation_id": 3}).trigger_id == "3"
    with pytest.raises(ConnectorError):
        freshdesk.parse_event({"freshdesk_webhook": {}})


def test_credentials_are_checked_when_configuring():
    with pytest.raises(InputError, match="email and api_token, or oauth_token"):
        ZendeskConnector().check_credentials({"webhook_secret": "s"})
    with pytest.raises(InputError, match="unknown credential"):
        FreshdeskConnector().check_credentials({"api_key": "k", "webhook_secret": "s", "password": "p"})
    assert ZendeskConnector().check_base_url("https://acme.zendesk.com/") == "https://acme.zendesk.com"
    with pytest.raises(InputError):
        ZendeskConnector().check_base_url("https://user:pw@acme.zendesk.com")


def test_the_note_carries_the_decision_and_the_tags_are_safe():
    decision = {"fault": "cracked_screen", "fault_confidence": 0.81, "severity": "medium", "action": "repair_rma",
                "action_text": "Open a repair", "team": "repairs", "needs_review": True, "review_reason": "low confidence",
                "ocr_text": "a copy of the input"}
    change = notes.render(decision, FieldMapping(fields={"fault": "1"}, review_group="9"), model_version="m@1", job_id="j")
    assert change.fields == {"1": "cracked_screen"} and change.group == "9"
    assert change.tags == ("twinlens_fault_cracked_screen", "twinlens_severity_medium", "twinlens_needs_review")
    assert "Confidence: 81%" in change.note and "Review reason: low confidence" in change.note
    assert "a copy of the input" not in change.note
    assert notes.tag_for("tl ", "fault", "Swollen Battery!") == "tl_fault_swollen_battery_"


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_seconds("7") == 7.0
    soon = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert 55 <= retry_after_seconds(format_datetime(soon, usegmt=True)) <= 60
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


waits: list[float] = []


def _transport(handler, **settings) -> GuardedTransport:
    transport = GuardedTransport("https://acme.zendesk.com", httpx.BasicAuth("a", "b"), Settings(**settings),
                                 sleep=lambda seconds: waits.append(seconds))
    transport._client = httpx.Client(transport=httpx.MockTransport(handler))
    return transport


def test_the_transport_calls_only_the_helpdesk_and_retries_429_and_5xx(monkeypatch):
    monkeypatch.setattr("twinlens.services.connectors_http.check_url", lambda *a, **k: None)  # no DNS here
    answers = iter([httpx.Response(429, headers={"retry-after": "3"}), httpx.Response(502), httpx.Response(200, json={"ok": 1})])
    waits.clear()
    transport = _transport(lambda request: next(answers), connector_retry_base_seconds=0.5)
    assert transport.request("GET", "/api/v2/tickets/1.json", ticket_id="1").json() == {"ok": 1}
    assert waits[0] == 3.0 and 0.25 <= waits[1] <= 1.0
    assert [r.status_code for r in transport.records] == [429, 502, 200]
    with pytest.raises(HelpdeskError, match="not the helpdesk's host"):
        transport.request("GET", "https://elsewhere.example/api")
    with pytest.raises(InputError, match="not the helpdesk's host"):
        transport.download("https://cdn.example/photo.png")
    too_long = _transport(lambda request: httpx.Response(429, headers={"retry-after": "3600"}))
    with pytest.raises(HelpdeskError, match="asks to wait 3600 s"):
        too_long.request("GET", "/api/v2/tickets/1.json")


def test_the_transport_refuses_private_addresses_unless_allowed():
    transport = GuardedTransport("http://127.0.0.1:9", httpx.BasicAuth("a", "b"), Settings())
    with pytest.raises(HelpdeskError, match="non-public address 127.0.0.1"):
        transport.request("GET", "/api/v2/tickets/1.json")
    with pytest.raises(InputError, match="non-public address 127.0.0.1"):
        transport.download("http://127.0.0.1:9/attachments/a.png")
    assert transport.records and all(r.error for r in transport.records)
    json.dumps([r.url for r in transport.records])  # the log holds plain URLs


def test_celery_workers_run_the_connector_steps_on_the_webhooks_queue():
    """`twinlens worker` listens on the webhooks queue by default, where the steps are published."""
    from twinlens.cli.workers import default_queues
    from twinlens.queue import CONNECTOR_TASK, WEBHOOK_QUEUE
    from twinlens.worker.celery_app import make_celery

    assert CONNECTOR_TASK in make_celery(Settings(broker_url="redis://127.0.0.1:6379/15")).tasks
    assert WEBHOOK_QUEUE in default_queues()
