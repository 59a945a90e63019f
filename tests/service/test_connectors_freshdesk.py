"""The Freshdesk connector against a fake Freshdesk on 127.0.0.1, through the real service (API
over HTTP, the in-process worker running the job), on PostgreSQL and SQLite: an automation
webhook with the connector's secret becomes a job whose decision lands on the ticket as a
private note, custom fields and tags (the ticket's own tags kept); a wrong or missing secret
is refused with no job; a 5xx is retried with backoff; a repeat makes no second note."""

from __future__ import annotations

import base64
import json
import time

from fake_helpdesks import (  # noqa: F401  (fixtures)
    FakeFreshdesk,
    connector_bundle,
    connector_service,
    freshdesk,
    wait_for,
)
from service_helpers import png_bytes, problem

SECRET = "fd-intake-secret-0c9a77e2"


def _connector(client, fake: FakeFreshdesk) -> dict:
    response = client.post("/v1/connectors", json={
        "kind": "freshdesk", "name": "freshdesk", "base_url": fake.url, "plugin": "support_ticket",
        "credentials": {"api_key": fake.API_KEY, "webhook_secret": SECRET},
        "fields": {"fault": "cf_fault", "severity": "cf_severity", "action": "cf_next_step"}, "tag_prefix": "tl-",
    })
    assert response.status_code == 201, response.text
    return response.json()


def _ticket(fake: FakeFreshdesk) -> int:
    url = fake.attachment_url(f"photo-{len(fake.tickets)}.png", png_bytes((64, 64), seed=7 + len(fake.tickets)))
    return fake.add_ticket("Phone got wet", "It fell in the sink and will not turn on now.", tags=["vip"],
                           attachments=[fake.attachment(url, "phone.png")])


def _deliver(client, connector: dict, ticket_id: int, headers: dict | None = None, **extra):
    body = json.dumps({"freshdesk_webhook": {"ticket_id": str(ticket_id), **extra}}).encode()
    headers = {"content-type": "application/json", "x-twinlens-secret": SECRET} if headers is None else headers
    return client.post(connector["intake_path"], content=body, headers=headers)


def _events(client, connector: dict, ticket_id: int) -> list[dict]:
    return client.get(f"/v1/connectors/{connector['id']}/events", params={"ticket_id": str(ticket_id), "limit": 100}).json()["data"]


def test_an_automation_webhook_adds_a_private_note_fields_and_tags(connector_service, freshdesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, freshdesk)
        ticket_id = _ticket(freshdesk)
        freshdesk.script("GET", rf"/api/v2/tickets/{ticket_id}", 503, body={"code": "service_unavailable"})  # retried

        answer = _deliver(client, connector, ticket_id)
        assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
        (note,) = wait_for(lambda: freshdesk.notes(ticket_id), what="a private note")
        events = wait_for(lambda: (found := _events(client, connector, ticket_id)) and found[0]["kind"] == "write_back" and found,
                          what="the write-back in the event log")
        (job,) = client.get("/v1/jobs").json()["data"]
        # A repeat of the rule's webhook (another body, same ticket, nothing new on it): no second note.
        assert _deliver(client, connector, ticket_id, triggered_by="rule 2").json()["status"] == "accepted"
        wait_for(lambda: any(e["kind"] == "duplicate" for e in _events(client, connector, ticket_id)), what="the duplicate")
        assert len(client.get("/v1/jobs").json()["data"]) == 1

    decision = job["result"]["decision"]
    assert job["status"] == "succeeded" and job["inputs"]["image"] is not None
    ticket = freshdesk.tickets[ticket_id]
    assert ticket["custom_fields"] == {"cf_fault": decision["fault"], "cf_severity": decision["severity"],
                                       "cf_next_step": decision["action"]}
    assert "vip" in ticket["tags"], "the ticket's own tags are kept (Freshdesk replaces the list)"
    assert f"tl-fault_{decision['fault']}" in ticket["tags"] and f"tl-severity_{decision['severity']}" in ticket["tags"]
    assert note["private"] is True
    assert f"Fault: {decision['fault']}" in note["body"] and f"Team: {decision['team']}" in note["body"]
    assert len(freshdesk.notes(ticket_id)) == 1
    (put,) = freshdesk.calls("PUT", rf"/api/v2/tickets/{ticket_id}")
    assert set(put.body) <= {"custom_fields", "tags", "group_id"}
    reads = [e for e in reversed(events) if e["kind"] == "call" and e["method"] == "GET"]
    assert [e["status_code"] for e in reads[:2]] == [503, 200], reads  # the 5xx, retried after a backoff


def test_a_wrong_or_missing_secret_is_refused_and_makes_no_job(connector_service, freshdesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, freshdesk)
        ticket_id = _ticket(freshdesk)
        wrong = {"content-type": "application/json", "x-twinlens-secret": SECRET[:-1] + "x"}
        assert "secret" in problem(_deliver(client, connector, ticket_id, wrong), 401)["detail"]
        problem(_deliver(client, connector, ticket_id, {"content-type": "application/json"}), 401)
        wrong_basic = base64.b64encode(b"freshdesk:not-it").decode()
        problem(_deliver(client, connector, ticket_id, {"content-type": "application/json", "authorization": f"Basic {wrong_basic}"}), 401)
        time.sleep(0.5)
        assert client.get("/v1/jobs").json()["data"] == []
        assert freshdesk.requests == []

        # The secret as the basic-auth password (Freshdesk's webhook form offers that) is accepted.
        right_basic = base64.b64encode(f"freshdesk:{SECRET}".encode()).decode()
        answer = _deliver(client, connector, ticket_id, {"content-type": "application/json", "authorization": f"Basic {right_basic}"})
        assert answer.status_code == 202, answer.text
        wait_for(lambda: freshdesk.notes(ticket_id), what="a private note")
