"""Configuring connectors per tenant, over the API and the CLI, on PostgreSQL and SQLite:
admin keys of the tenant only (other tenants' admins, platform admins too, see nothing);
credentials write-only, sealed at rest, never in answers, the audit log or the CLI's output;
bad settings refused with nothing written; and `twinlens connectors import` back-fills the
latest closed tickets of a fake Zendesk as a support_ticket training export."""

from __future__ import annotations

import json
import uuid

import pytest
from fake_helpdesks import FakeZendesk, connector_bundle, connector_service, zendesk  # noqa: F401  (fixtures)
from service_helpers import png_bytes, problem
from sqlalchemy import text
from typer.testing import CliRunner

from twinlens.cli import app
from twinlens.contract.plugin import DatasetOptions
from twinlens.contract.registry import get_plugin

SECRET = "zd-signing-secret-config-5d1e"


def _body(fake: FakeZendesk, **overrides) -> dict:
    return {"kind": "zendesk", "name": "helpdesk", "base_url": fake.url, "plugin": "support_ticket",
            "credentials": {"email": fake.EMAIL, "api_token": fake.TOKEN, "webhook_secret": SECRET},
            "fields": {"fault": "360001", "severity": "360002"}, **overrides}


def _stored(connector_service) -> str:
    """Every connector row and audit event as text, as a copy of the database would show them."""
    with connector_service.database.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM connectors")).fetchall()
        rows += connection.execute(text("SELECT * FROM audit_events")).fetchall()
        rows += connection.execute(text("SELECT * FROM connector_events")).fetchall()
    return "\n".join(str(row) for row in rows)


def test_connectors_are_configured_by_their_tenants_admins_and_never_show_their_credentials(connector_service, zendesk):
    key = connector_service.tenant_with_model()
    with connector_service.client(key) as client:
        created = client.post("/v1/connectors", json=_body(zendesk))
        assert created.status_code == 201, created.text
        connector = created.json()
        assert connector["credential_names"] == ["api_token", "email", "webhook_secret"]
        assert connector["intake_path"] == f"/v1/connectors/zendesk/{connector['id']}/events"
        answers = [created.text, client.get("/v1/connectors").text, client.get(f"/v1/connectors/{connector['id']}").text]
        changed = client.patch(f"/v1/connectors/{connector['id']}", json={"review_tag": "", "write_back": False,
                                                                          "credentials": {"api_token": "zd-rotated-token-88"}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["review_tag"] is None and changed.json()["write_back"] is False
        answers.append(changed.text)
        problem(client.post("/v1/connectors", json=_body(zendesk)), 409)  # the tenant has one of that name

        # Bad settings: refused, and nothing half-written.
        problem(client.post("/v1/connectors", json=_body(zendesk, name="b", kind="helpscout")), 422)
        problem(client.post("/v1/connectors", json=_body(zendesk, name="c", credentials={"email": zendesk.EMAIL})), 422)
        problem(client.post("/v1/connectors", json=_body(zendesk, name="d", base_url="ftp://acme")), 422)
        problem(client.post("/v1/connectors", json=_body(zendesk, name="e", plugin="no_such_plugin")), 404)
        problem(client.patch(f"/v1/connectors/{connector['id']}", json={"base_url": "not a url", "write_back": True}), 422)
        assert [c["name"] for c in client.get("/v1/connectors").json()["data"]] == ["helpdesk"]
        assert client.get(f"/v1/connectors/{connector['id']}").json()["write_back"] is False

    # Other tenants' admins, platform admins too, and the tenant's plain keys see nothing.
    other = connector_service.tenant_with_model()
    with connector_service.client() as client:  # the platform admin
        plain = client.post("/v1/keys", json={"tenant": _tenant_of(connector_service, key), "admin": False}).json()["key"]
    for outsider, status in ((other, 404), (connector_service.admin_key, 404), (plain, 403)):
        with connector_service.client(outsider) as client:
            problem(client.get(f"/v1/connectors/{connector['id']}"), status)
            problem(client.get(f"/v1/connectors/{connector['id']}/events"), status)
            problem(client.patch(f"/v1/connectors/{connector['id']}", json={"enabled": False}), status)
            problem(client.delete(f"/v1/connectors/{connector['id']}"), status)
            if status == 404:
                assert client.get("/v1/connectors").json()["data"] == []

    stored = _stored(connector_service)
    for secret in (zendesk.TOKEN, "zd-rotated-token-88", SECRET):
        assert all(secret not in answer for answer in answers), secret
        assert secret not in stored, f"{secret} is stored in clear"

    with connector_service.client(key) as client:
        assert client.delete(f"/v1/connectors/{connector['id']}").status_code == 204
        problem(client.get(f"/v1/connectors/{connector['id']}"), 404)
        problem(client.post(connector["intake_path"], json={"ticket_id": "1"}), 404)


def _tenant_of(connector_service, key: str) -> str:
    with connector_service.client(key) as client:
        return client.get("/v1/tenant").json()["name"]


@pytest.fixture
def cli_env(connector_service) -> dict[str, str]:
    """The service's own settings, for the operator's commands."""
    settings = connector_service.service.settings
    return {"TWINLENS_DATABASE_URL": settings.resolved_database_url, "TWINLENS_DATA_DIR": str(settings.data_dir),
            "TWINLENS_ALLOW_PRIVATE_HELPDESKS": "true", "TWINLENS_BROKER_URL": ""}


def test_the_cli_configures_lists_and_back_fills_closed_tickets_as_a_training_export(connector_service, zendesk, cli_env, tmp_path):
    key = connector_service.tenant_with_model()
    tenant = _tenant_of(connector_service, key)
    credentials = tmp_path / "zendesk.json"
    credentials.write_text(json.dumps({"email": zendesk.EMAIL, "api_token": zendesk.TOKEN, "webhook_secret": SECRET}))
    runner = CliRunner()
    configured = runner.invoke(app, ["connectors", "configure", "--tenant", tenant, "--name", "zd", "--kind", "zendesk",
                                     "--url", zendesk.url, "--plugin", "support_ticket", "--credentials-file", str(credentials),
                                     "--field", "fault=360001", "--field", "severity=360002", "--field", "team=360003"],
                               env=cli_env)
    assert configured.exit_code == 0, configured.output
    listed = runner.invoke(app, ["connectors", "list", "--tenant", tenant], env=cli_env)
    assert listed.exit_code == 0 and json.loads(listed.stdout.splitlines()[0])["name"] == "zd", listed.output
    assert zendesk.TOKEN not in configured.output + listed.output and SECRET not in configured.output + listed.output
    with connector_service.client(key) as client:  # the API sees what the CLI configured
        (connector,) = client.get("/v1/connectors").json()["data"]
    assert connector["fields"] == {"fault": "360001", "severity": "360002", "team": "360003"}

    # History: closed and solved tickets with their resolution fields, and one still open.
    photo = zendesk.attachment_url("closed.png", png_bytes((40, 40), seed=3))
    zendesk.add_ticket("Cracked", "Dropped it, the glass is cracked", status="closed", attachments=[zendesk.attachment(photo, "c.png")],
                       custom_fields={360001: "cracked_screen", 360002: "medium", 360003: "repairs"})
    zendesk.add_ticket("Bulging", "The battery is swollen and the case pops open", status="solved",
                       custom_fields={360001: "swollen_battery", 360002: "not_a_severity"})
    zendesk.add_ticket("Still open", "it does not charge", status="open", custom_fields={360001: "charging_port"})
    out = tmp_path / "history"
    imported = runner.invoke(app, ["connectors", "import", "zd", "--tenant", tenant, "--out", str(out), "--last", "5"], env=cli_env)
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert report["tickets"] == 2 and report["with_photo"] == 1 and report["unknown_labels"] == 1, report

    rows = [json.loads(line) for line in (out / "tickets.jsonl").read_text().splitlines()]
    by_subject = {row["subject"]: row for row in rows}
    assert set(by_subject) == {"Cracked", "Bulging"}
    assert by_subject["Cracked"]["fault"] == "cracked_screen" and by_subject["Cracked"]["severity"] == "medium"
    assert by_subject["Bulging"]["fault"] == "swollen_battery" and by_subject["Bulging"]["severity"] is None
    assert "team" not in by_subject["Cracked"], "a mapped field that is no label is not a column"
    # The plugin reads it as training data (the cold-start path).
    dataset = get_plugin("support_ticket").read_dataset(out, DatasetOptions())
    assert sorted(s.id for s in dataset.samples) == sorted(row["ticket_id"] for row in rows)
    assert sum(s.image is not None for s in dataset.samples) == 1

    unknown = runner.invoke(app, ["connectors", "import", str(uuid.uuid4()), "--tenant", tenant, "--out", str(out)], env=cli_env)
    assert unknown.exit_code == 2 and "has no connector" in unknown.output


def test_a_ticket_for_a_tenant_without_a_model_is_logged_as_failed_with_no_job(connector_service, zendesk):
    from fake_helpdesks import wait_for, zendesk_created_event, zendesk_headers

    with connector_service.client() as client:  # a tenant with no model for the generic plugin (nor a zero-shot one)
        key = client.post("/v1/keys", json={"tenant": f"t-{uuid.uuid4().hex[:10]}", "admin": True}).json()["key"]
    with connector_service.client(key) as client:
        connector = client.post("/v1/connectors", json=_body(zendesk, plugin="generic")).json()
        ticket_id = zendesk.add_ticket("Help", "it is broken")
        body = zendesk_created_event(ticket_id)
        assert client.post(connector["intake_path"], content=body, headers=zendesk_headers(SECRET, body)).status_code == 202
        failed = wait_for(lambda: [e for e in client.get(f"/v1/connectors/{connector['id']}/events").json()["data"]
                                   if e["kind"] == "failed"], what="the failure in the event log")
        assert "no job: no active model for plugin 'generic'" in failed[0]["error"], failed
        assert client.get("/v1/jobs").json()["data"] == []
