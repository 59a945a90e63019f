"""GET /v1/audit-events: a tenant admin reads its own tenant's audit log, newest first,
page by page, by action and time window; never another tenant's events, and deletions are
recorded without the deleted content (PostgreSQL and SQLite)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from erasure_helpers import planted
from service_helpers import problem, wait_finished


def _all_pages(client, **params) -> list[dict]:
    events, cursor = [], None
    while True:
        page = client.get("/v1/audit-events", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 2
        events += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return events


def _job(client, text: str, subject_ref: str | None = None) -> str:
    body = {"inputs": {"text": text}, "metadata": {"subject_ref": subject_ref} if subject_ref else {}}
    job_id = client.post("/v1/plugins/generic/jobs", json=body).json()["id"]
    assert wait_finished(client, job_id)["status"] == "succeeded"
    return job_id


def test_a_tenant_admin_reads_its_own_events_newest_first_page_by_page(live):
    admin_key, neighbour_key = live.new_tenant_key(admin=True), live.new_tenant_key(admin=True)
    secret_text, subject = planted("deletedtext"), planted("subject")
    with live.client(admin_key) as client, live.client(neighbour_key) as neighbour:
        tenant = client.get("/v1/tenant").json()["name"]
        new_keys = [client.post("/v1/keys", json={"tenant": tenant, "name": f"k{i}"}).json()["id"] for i in range(3)]
        neighbour.post("/v1/keys", json={"tenant": neighbour.get("/v1/tenant").json()["name"]})
        deleted = _job(client, secret_text)
        assert client.delete(f"/v1/jobs/{deleted}").status_code == 204
        _job(client, planted("erasedtext"), subject_ref=subject)
        assert client.delete(f"/v1/subjects/{subject}").json()["jobs"] == 1

        events = _all_pages(client)
        only_deletes = _all_pages(client, action="job.delete")
        middle = datetime.fromisoformat(events[2]["created_at"])
        since = _all_pages(client, since=middle.isoformat())
        until = _all_pages(client, until=middle.isoformat())
    actions = [event["action"] for event in events]
    assert actions[:2] == ["subject.erase", "job.delete"] and actions.count("key.create") == 4, actions  # its own key and three
    assert {f"key:{key_id}" for key_id in new_keys} <= {event["target"] for event in events}
    stamps = [(event["created_at"], event["id"]) for event in events]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)  # newest first, none twice
    assert [event["target"] for event in only_deletes] == [f"job:{deleted}"]
    assert since == events[:3] and until == events[3:]  # since inclusive, until exclusive: the two windows split the log
    text = json.dumps(events)
    assert secret_text not in text and subject not in text  # deletions keep ids and counts, not content


def test_the_audit_log_is_for_tenant_admins_and_bad_queries_name_their_field(live):
    plain_key, admin_key = live.new_tenant_key(), live.new_tenant_key(admin=True)
    with live.client(plain_key) as plain, live.client(admin_key) as admin:
        problem(plain.get("/v1/audit-events"), 403)
        problem(admin.get("/v1/audit-events", headers={"Authorization": "Bearer tl_not_a_key"}), 401)
        now = datetime.now().astimezone()
        checks = (
            ({"since": "2026-11-24T09:00:00"}, "since"),  # no time zone
            ({"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()}, "until"),
            ({"since": "yesterday"}, "since"),
            ({"until": "0.5"}, "until"),  # not a Unix time either
            ({"until": "0001-01-01T00:00:00+01:00"}, "until"),  # before the first UTC instant
            ({"cursor": "not-a-cursor"}, "cursor"),
            ({"limit": 0}, "query.limit"),
        )
        for params, field in checks:
            body = problem(admin.get("/v1/audit-events", params=params), 422)
            assert body["errors"][0]["field"] == field, (params, body)
