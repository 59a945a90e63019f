"""The Zendesk connector against a fake Zendesk on 127.0.0.1, through the real service (API
over HTTP, the in-process worker running the job with a small support_ticket model), on
PostgreSQL and SQLite: a signed event becomes a job whose decision lands on the ticket as
custom fields, additional tags and a private comment; refused webhooks make nothing; a
repeated event makes one job and one note; a 409 on safe_update is read again and retried;
a 429 waits its Retry-After; an attachment on a foreign host is refused and logged; the
credentials never show in logs or answers.

The fake is driven by plain httpx, like the connector: zenpy is not used (the connector
must send every call through the SSRF guard and the per-ticket log; see zendesk.py)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone

from fake_helpdesks import (  # noqa: F401  (fixtures)
    FakeZendesk,
    connector_bundle,
    connector_service,
    wait_for,
    zendesk,
    zendesk_created_event,
    zendesk_headers,
)
from service_helpers import png_bytes, problem
from sqlalchemy import inspect, text

from twinlens.contract.registry import get_plugin
from twinlens.db.base import utcnow
from twinlens.db.models import Job
from twinlens.worker import tasks

SECRET = "zd-signing-secret-4b7e0a1f"
FAULT_FIELD, SEVERITY_FIELD, TEAM_FIELD = 360001, 360002, 360003


def _connector(client, fake: FakeZendesk, **overrides) -> dict:
    body = {
        "kind": "zendesk", "name": f"zendesk-{fake.port}", "base_url": fake.url, "plugin": "support_ticket",
        "credentials": {"email": fake.EMAIL, "api_token": fake.TOKEN, "webhook_secret": SECRET},
        "fields": {"fault": str(FAULT_FIELD), "severity": str(SEVERITY_FIELD), "team": str(TEAM_FIELD)},
        "review_group": "4242", **overrides,
    }
    response = client.post("/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _deliver(client, connector: dict, body: bytes, headers: dict | None = None):
    return client.post(connector["intake_path"], content=body, headers=headers or zendesk_headers(SECRET, body))


def _photo_ticket(fake: FakeZendesk, *, host: str = "127.0.0.1") -> int:
    url = fake.attachment_url(f"photo-{fake.port}-{len(fake.tickets)}.png", png_bytes((64, 64), seed=len(fake.tickets)), host=host)
    return fake.add_ticket("Screen cracked", "I dropped my Nimbus 6 and the screen is shattered, photo attached.",
                           attachments=[fake.attachment(url, "photo.png")])


def _written(fake: FakeZendesk, ticket_id: int, notes: int = 1) -> list[dict]:
    return wait_for(lambda: len(fake.private_comments(ticket_id)) >= notes and fake.private_comments(ticket_id),
                    what=f"a private comment on ticket {ticket_id}")


def _finished(client, connector: dict, ticket_id: int) -> list[dict]:
    """The ticket's events once its write-back is logged (the log is written after the calls)."""
    return wait_for(lambda: (events := _events(client, connector, ticket_id)) and events[0]["kind"] == "write_back" and events,
                    what=f"the write-back of ticket {ticket_id} in the event log")


def _events(client, connector: dict, ticket_id: int) -> list[dict]:
    response = client.get(f"/v1/connectors/{connector['id']}/events", params={"ticket_id": str(ticket_id), "limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _jobs(client) -> list[dict]:
    return client.get("/v1/jobs", params={"limit": 100}).json()["data"]


def test_a_signed_ticket_created_event_puts_fields_tags_and_a_private_note_on_the_ticket(connector_service, zendesk, caplog):
    caplog.set_level(logging.DEBUG)
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk)

        answer = _deliver(client, connector, zendesk_created_event(ticket_id))
        assert answer.status_code == 202, answer.text  # how fast it answers: benchmarks/connectors.py
        assert answer.json() == {"status": "accepted", "ticket_id": str(ticket_id), "reason": None}

        (note,) = _written(zendesk, ticket_id)
        (job,) = _jobs(client)
    assert job["status"] == "succeeded", job
    assert job["inputs"]["image"] is not None and "shattered" in job["inputs"]["texts"]["text"]
    decision = job["result"]["decision"]
    get_plugin("support_ticket").decision_model().model_validate(decision)

    # The mapped custom fields, the tags, and the group a ticket needing review moves to.
    assert zendesk.field_value(ticket_id, FAULT_FIELD) == decision["fault"]
    assert zendesk.field_value(ticket_id, SEVERITY_FIELD) == decision["severity"]
    assert zendesk.field_value(ticket_id, TEAM_FIELD) == decision["team"]
    tags = zendesk.tickets[ticket_id]["tags"]
    assert f"twinlens_fault_{decision['fault']}" in tags and f"twinlens_severity_{decision['severity']}" in tags
    assert ("twinlens_needs_review" in tags) == decision["needs_review"]
    assert zendesk.tickets[ticket_id]["group_id"] == (4242 if decision["needs_review"] else None)
    # The private comment says what an agent needs.
    body = note["body"]
    for expected in (f"Fault: {decision['fault']}", f"Severity: {decision['severity']}", f"Action: {decision['action_text']}",
                     f"Team: {decision['team']}", "Confidence: ", job["result"]["model_version"]["version"]):
        assert expected in body, body
    if decision["needs_review"]:
        assert f"Review reason: {decision['review_reason']}" in body
    # One PUT: safe_update with the stamp read, additional_tags (never plain tags), a private comment.
    (put,) = zendesk.calls("PUT", rf"/api/v2/tickets/{ticket_id}\.json")
    update = put.body["ticket"]
    assert update["safe_update"] is True and update["updated_stamp"]
    assert "tags" not in update and set(update["additional_tags"]) <= set(tags)
    assert update["comment"]["public"] is False
    assert zendesk.calls("GET", r"/attachments/photo-.*\.png"), "the photo was fetched from the helpdesk"

    with connector_service.client(key) as client:
        events = _finished(client, connector, ticket_id)
    kinds = [event["kind"] for event in reversed(events)]
    assert kinds[0] == "intake" and kinds[-1] == "write_back", kinds
    assert {"call", "attachment", "job"} <= set(kinds)
    calls = [event for event in events if event["kind"] == "call"]
    assert all(event["status_code"] == 200 and event["url"].startswith(zendesk.url) for event in calls), calls
    # The credentials never show in the service's logs.
    for secret in (zendesk.TOKEN, SECRET):
        assert secret not in caplog.text


def test_a_bad_signature_or_a_stale_timestamp_is_refused_and_makes_no_job(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk)
        body = zendesk_created_event(ticket_id)

        forged = zendesk_headers("not-the-secret", body)
        assert "signature does not match" in problem(_deliver(client, connector, body, forged), 401)["detail"]
        stale = zendesk_headers(SECRET, body, sent=datetime.now(timezone.utc) - timedelta(minutes=10))
        assert "timestamp" in problem(_deliver(client, connector, body, stale), 401)["detail"]
        tampered = zendesk_headers(SECRET, body)
        problem(_deliver(client, connector, body.replace(b"ticket.created", b"ticket.CREATED"), tampered), 401)
        problem(client.post(connector["intake_path"], content=body, headers={"content-type": "application/json"}), 401)
        # Another connector kind's intake path for this connector: not found.
        problem(client.post(connector["intake_path"].replace("zendesk", "freshdesk"), content=body, headers=forged), 404)

        time.sleep(0.5)
        assert _jobs(client) == []
        assert _events(client, connector, ticket_id) == []
    assert zendesk.requests == [], "a refused webhook must not reach the helpdesk"


def test_the_same_event_delivered_twice_makes_one_job_and_one_note(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk)
        body = zendesk_created_event(ticket_id)
        assert _deliver(client, connector, body).json()["status"] == "accepted"
        assert _deliver(client, connector, body).json()["status"] == "duplicate"  # Zendesk retrying its delivery
        _written(zendesk, ticket_id)
        # A trigger's webhook for the same ticket, naming no comment: the latest public
        # comment is the one already handled, so it is a duplicate too.
        trigger = json.dumps({"ticket_id": str(ticket_id)}).encode()
        assert _deliver(client, connector, trigger).json()["status"] == "accepted"
        wait_for(lambda: any(e["kind"] == "duplicate" for e in _events(client, connector, ticket_id)), what="the duplicate")
        # TwinLens's own private comment fires comment_added: ignored, no loop.
        own = json.dumps({"type": "zen:event-type:ticket.comment_added", "detail": {"id": str(ticket_id)},
                          "event": {"comment": {"id": "77", "is_public": False}}}).encode()
        assert _deliver(client, connector, own).json()["status"] == "ignored"
        time.sleep(1.0)
        assert len(_jobs(client)) == 1
    assert len(zendesk.private_comments(ticket_id)) == 1
    assert len(zendesk.calls("PUT", rf"/api/v2/tickets/{ticket_id}\.json")) == 1


def test_a_new_customer_comment_is_a_new_decision(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk)
        _deliver(client, connector, json.dumps({"ticket_id": ticket_id}).encode())
        _written(zendesk, ticket_id)
        comment = zendesk.add_comment(ticket_id, "Now it smells like burning and the battery is swollen")
        event = json.dumps({"type": "zen:event-type:ticket.comment_added", "detail": {"id": str(ticket_id)},
                            "event": {"comment": {"id": str(comment), "is_public": True}}}).encode()
        assert _deliver(client, connector, event).json()["status"] == "accepted"
        _written(zendesk, ticket_id, notes=2)
        jobs = _jobs(client)
    assert len(jobs) == 2 and "burning" in jobs[0]["inputs"]["texts"]["text"]


def test_a_409_on_safe_update_reads_the_ticket_again_and_retries(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk)
        edited = {}

        def agent_edit(fake: FakeZendesk) -> None:  # an agent edits the ticket between TwinLens's read and its update
            fake.agent_edit(ticket_id)
            edited["stamp"] = fake.tickets[ticket_id]["updated_at"]

        zendesk.script("PUT", rf"/api/v2/tickets/{ticket_id}\.json", 0, before=agent_edit)
        _deliver(client, connector, zendesk_created_event(ticket_id))
        _written(zendesk, ticket_id)
        events = _finished(client, connector, ticket_id)
    first, second = zendesk.calls("PUT", rf"/api/v2/tickets/{ticket_id}\.json")
    assert first.body["ticket"]["updated_stamp"] != second.body["ticket"]["updated_stamp"]
    assert second.body["ticket"]["updated_stamp"] == edited["stamp"], "retried with the stamp read again"
    assert "agent_touched" in zendesk.tickets[ticket_id]["tags"], "the agent's edit was kept"
    assert len(zendesk.private_comments(ticket_id)) == 1
    statuses = [e["status_code"] for e in reversed(events) if e["kind"] == "call" and e["method"] == "PUT"]
    assert statuses == [409, 200], statuses


def test_a_429_waits_for_retry_after_and_then_succeeds(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk)
        zendesk.script("GET", rf"/api/v2/tickets/{ticket_id}\.json", 429, headers={"retry-after": "2"},
                       body={"error": "TooManyRequests"})
        _deliver(client, connector, zendesk_created_event(ticket_id))
        _written(zendesk, ticket_id)
        events = _finished(client, connector, ticket_id)
    reads = [e for e in reversed(events) if e["kind"] == "call" and e["url"].endswith(f"/tickets/{ticket_id}.json")
             and e["method"] == "GET"]
    assert [e["status_code"] for e in reads[:2]] == [429, 200], reads
    assert [e["attempt"] for e in reads[:2]] == [1, 2]
    waited = datetime.fromisoformat(reads[1]["created_at"]) - datetime.fromisoformat(reads[0]["created_at"])
    assert waited >= timedelta(seconds=1.9), waited


def test_an_attachment_on_a_foreign_host_is_refused_and_logged_on_the_ticket(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        ticket_id = _photo_ticket(zendesk, host="localhost")  # same fake, another host name
        _deliver(client, connector, zendesk_created_event(ticket_id))
        _written(zendesk, ticket_id)
        events = _finished(client, connector, ticket_id)
        (job,) = _jobs(client)
    (refused,) = [e for e in events if e["kind"] == "attachment"]
    assert "refused: localhost is not the helpdesk's host" in refused["error"], refused
    assert not zendesk.calls("GET", r"/attachments/.*"), "nothing was fetched from the foreign host"
    assert job["status"] == "succeeded" and job["inputs"]["image"] is None  # the text alone decided

    # Allow-listed, the same host's attachment is fetched (without the helpdesk's credentials).
    with connector_service.client(key) as client:
        allowed = client.patch(f"/v1/connectors/{connector['id']}", json={"attachment_hosts": ["localhost"]})
        assert allowed.status_code == 200 and allowed.json()["attachment_hosts"] == ["localhost"]
        second = _photo_ticket(zendesk, host="localhost")
        _deliver(client, connector, zendesk_created_event(second))
        _written(zendesk, second)
    (fetched,) = zendesk.calls("GET", r"/attachments/.*")
    assert "authorization" not in fetched.headers


def test_the_retention_purge_leaves_no_copy_of_the_tickets_text(connector_service, zendesk):
    """The connector's tables keep ticket ids, calls and outcomes, never the ticket's words:
    once the job's inputs are purged, no table holds them."""
    key = connector_service.tenant_with_model()
    planted = f"zq{uuid.uuid4().hex[:12]}"
    with connector_service.client(key) as client:
        connector = _connector(client, zendesk)
        url = zendesk.attachment_url(f"{planted}.png", png_bytes((64, 64), seed=99))
        ticket_id = zendesk.add_ticket(f"Subject {planted}", f"The screen is shattered, serial {planted}",
                                       attachments=[zendesk.attachment(url, f"{planted}.png")])
        _deliver(client, connector, zendesk_created_event(ticket_id))
        _written(zendesk, ticket_id)
        _finished(client, connector, ticket_id)
        (job,) = _jobs(client)
    assert planted in _every_row(connector_service), "the planted string never reached storage: the search proves nothing"
    with connector_service.database.session() as session:
        session.get(Job, uuid.UUID(job["id"])).finished_at = utcnow() - timedelta(days=400)
    assert tasks.purge_expired_inputs(connector_service.service.worker.context) >= 1
    assert planted not in _every_row(connector_service)


def _every_row(connector_service) -> str:
    with connector_service.database.engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        return "\n".join(repr(tuple(row)) for table in tables for row in connection.execute(text(f'SELECT * FROM "{table}"')))
