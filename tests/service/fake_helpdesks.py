"""A fake Zendesk and a fake Freshdesk on 127.0.0.1, for the connector tests.

Each implements the request and response shapes the connectors use (as the helpdesks
document them): tickets, comments or conversations with attachments, safe updates (409 on
a stale `updated_stamp`), additional tags, private comments and notes, search of closed
tickets, and attachments served from /attachments/. Each records every request it got
(method, path, query, headers, JSON body) and can be scripted to answer the next matching
request with a given status (429 with Retry-After, 500, a concurrent agent edit).

Also here: the support_ticket model and the service these tests run against (the real API
over HTTP and the in-process worker, as the other service tests), with the fakes' loopback
address allowed (`allow_private_helpdesks`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from service_db import fresh_database, service_settings

from twinlens.cli.service import EmbeddedService, train_sample_model
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Scripted:
    method: str
    path: re.Pattern
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    before: Any = None  # called (with the fake) instead of answering: e.g. an agent's edit


class FakeHelpdesk:
    """What both fakes share: the HTTP server, the request log, scripts and attachments."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: list[Scripted] = []
        self.attachments: dict[str, tuple[bytes, str]] = {}
        self.lock = threading.RLock()
        self.ids = itertools.count(9001)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                fake._handle(self, "GET")

            def do_PUT(self):  # noqa: N802
                fake._handle(self, "PUT")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests use --------------------------------------------------------------------
    def attachment_url(self, name: str, data: bytes, content_type: str = "image/png", *, host: str = "127.0.0.1") -> str:
        """Serve `data` at /attachments/<name>; `host="localhost"` makes a URL on another host."""
        self.attachments[name] = (data, content_type)
        return f"http://{host}:{self.port}/attachments/{name}"

    def script(self, method: str, path: str, status: int, *, headers: dict[str, str] | None = None, body: Any = None,
               before=None) -> None:
        self.scripts.append(Scripted(method, re.compile(path), status, headers or {}, body, before))

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    # -- serving -----------------------------------------------------------------------------
    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        record = Recorded(method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in handler.headers.items()}, body)
        with self.lock:
            self.requests.append(record)
            status, headers, answer = self._answer(record)
        if isinstance(answer, bytes):
            payload, kind = answer, headers.pop("content-type", "application/octet-stream")
        else:
            payload, kind = json.dumps(answer).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("content-type", kind)
        handler.send_header("content-length", str(len(payload)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, record: Recorded) -> tuple[int, dict[str, str], Any]:
        for script in list(self.scripts):
            if script.method == record.method and script.path.fullmatch(record.path):
                self.scripts.remove(script)
                if script.before is None:
                    return script.status, dict(script.headers), script.body if script.body is not None else {"error": "scripted"}
                script.before(self)  # then answer as the helpdesk would
                break
        if record.path.startswith("/attachments/"):
            name = record.path.removeprefix("/attachments/")
            if name not in self.attachments:
                return 404, {}, {"error": "RecordNotFound"}
            data, kind = self.attachments[name]
            return 200, {"content-type": kind}, data
        if not self.authorised(record.headers.get("authorization", "")):
            return 401, {}, {"error": "Couldn't authenticate you"}
        return self.route(record)

    def authorised(self, header: str) -> bool:
        raise NotImplementedError

    def route(self, record: Recorded) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError


def _stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeZendesk(FakeHelpdesk):
    """Zendesk's Tickets, Ticket Comments and Search APIs."""

    EMAIL, TOKEN = "agent@acme.test", "zd-api-token-6f1d2c"

    def __init__(self) -> None:
        super().__init__()
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.requester = 501

    def authorised(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.EMAIL}/token:{self.TOKEN}".encode()).decode()
        return header == f"Basic {expected}"

    def add_ticket(self, subject: str, description: str, *, attachments: list[dict[str, Any]] = (), status: str = "new",
                   custom_fields: dict[int, Any] | None = None, tags: list[str] = ()) -> int:
        ticket_id = next(self.ids)
        self.tickets[ticket_id] = {
            "id": ticket_id, "url": f"{self.url}/api/v2/tickets/{ticket_id}.json", "subject": subject,
            "description": description, "status": status, "requester_id": self.requester, "tags": list(tags),
            "custom_fields": [{"id": fid, "value": value} for fid, value in (custom_fields or {}).items()],
            "group_id": None, "created_at": _stamp(), "updated_at": _stamp(),
        }
        self.comments[ticket_id] = []
        self.add_comment(ticket_id, description, attachments=attachments)
        return ticket_id

    def add_comment(self, ticket_id: int, body: str, *, public: bool = True, author: int | None = None,
                    attachments: list[dict[str, Any]] = ()) -> int:
        comment_id = next(self.ids)
        self.comments[ticket_id].append({
            "id": comment_id, "type": "Comment", "author_id": author or self.requester, "body": body, "plain_body": body,
            "html_body": f"<p>{body}</p>", "public": public, "attachments": list(attachments), "created_at": _stamp(),
        })
        return comment_id

    def attachment(self, url: str, name: str, content_type: str = "image/png", size: int = 0) -> dict[str, Any]:
        return {"id": next(self.ids), "file_name": name, "content_url": url, "content_type": content_type, "size": size}

    def agent_edit(self, ticket_id: int) -> None:
        """An agent changes the ticket: its updated_at moves on (a safe update with the old stamp gets 409)."""
        ticket = self.tickets[ticket_id]
        ticket["tags"].append("agent_touched")
        ticket["updated_at"] = _stamp(datetime.now(timezone.utc) + timedelta(seconds=1))

    def private_comments(self, ticket_id: int) -> list[dict[str, Any]]:
        return [c for c in self.comments[ticket_id] if not c["public"]]

    def field_value(self, ticket_id: int, field_id: int) -> Any:
        return next((f["value"] for f in self.tickets[ticket_id]["custom_fields"] if f["id"] == field_id), None)

    def route(self, record: Recorded) -> tuple[int, dict[str, str], Any]:
        match = re.fullmatch(r"/api/v2/tickets/(\d+)\.json", record.path)
        if match and int(match[1]) in self.tickets:
            ticket = self.tickets[int(match[1])]
            if record.method == "GET":
                return 200, {}, {"ticket": ticket}
            if record.method == "PUT":
                return self._update(ticket, record.body["ticket"])
        match = re.fullmatch(r"/api/v2/tickets/(\d+)/comments\.json", record.path)
        if match and record.method == "GET" and int(match[1]) in self.comments:
            return 200, {}, {"comments": self.comments[int(match[1])], "next_page": None, "previous_page": None,
                             "count": len(self.comments[int(match[1])])}
        if record.path == "/api/v2/search.json" and record.method == "GET":
            return 200, {}, self._search(record.query)
        return 404, {}, {"error": "RecordNotFound", "description": "Not found"}

    def _update(self, ticket: dict[str, Any], change: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        if "tags" in change:
            return 422, {}, {"error": "RecordInvalid", "description": "this fake refuses plain tags: they replace all of them"}
        if change.get("safe_update") and change.get("updated_stamp") != ticket["updated_at"]:
            return 409, {}, {"error": "UpdateConflict", "description": "Safe Update prevented the update due to outdated "
                                                                        "ticket data. Please fetch the latest ticket data and try again."}
        for update in change.get("custom_fields") or []:
            current = [f for f in ticket["custom_fields"] if f["id"] == update["id"]]
            if current:
                current[0]["value"] = update["value"]
            else:
                ticket["custom_fields"].append({"id": update["id"], "value": update["value"]})
        for tag in change.get("additional_tags") or []:
            if tag not in ticket["tags"]:
                ticket["tags"].append(tag)
        if change.get("group_id") is not None:
            ticket["group_id"] = change["group_id"]
        comment = change.get("comment")
        if comment:
            self.add_comment(ticket["id"], comment["body"], public=comment.get("public", True), author=7)
        ticket["updated_at"] = _stamp(datetime.now(timezone.utc) + timedelta(seconds=2))
        return 200, {}, {"ticket": ticket, "audit": {"id": next(self.ids)}}

    def _search(self, query: dict[str, list[str]]) -> dict[str, Any]:
        text = query.get("query", [""])[0]
        assert "type:ticket" in text and "status>=solved" in text, text
        rows = [t for t in self.tickets.values() if t["status"] in ("solved", "closed")]
        rows.sort(key=lambda t: t["updated_at"], reverse=True)
        per_page = int(query.get("per_page", ["100"])[0])
        return {"results": [dict(t, result_type="ticket") for t in rows[:per_page]], "count": len(rows), "next_page": None}


class FakeFreshdesk(FakeHelpdesk):
    """Freshdesk's Tickets (include=conversations), Notes and Search APIs."""

    API_KEY = "fd-api-key-91c0be"

    def __init__(self) -> None:
        super().__init__()
        self.tickets: dict[int, dict[str, Any]] = {}

    def authorised(self, header: str) -> bool:
        return header == "Basic " + base64.b64encode(f"{self.API_KEY}:X".encode()).decode()

    def add_ticket(self, subject: str, description: str, *, attachments: list[dict[str, Any]] = (), status: int = 2,
                   custom_fields: dict[str, Any] | None = None, tags: list[str] = ()) -> int:
        ticket_id = next(self.ids)
        self.tickets[ticket_id] = {
            "id": ticket_id, "subject": subject, "description": f"<div>{description}</div>", "description_text": description,
            "status": status, "priority": 1, "requester_id": 601, "group_id": None, "tags": list(tags),
            "custom_fields": dict(custom_fields or {}), "attachments": list(attachments), "conversations": [],
            "created_at": _stamp(), "updated_at": _stamp(),
        }
        return ticket_id

    def attachment(self, url: str, name: str, content_type: str = "image/png", size: int = 0) -> dict[str, Any]:
        return {"id": next(self.ids), "name": name, "content_type": content_type, "size": size, "attachment_url": url}

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        return [c for c in self.tickets[ticket_id]["conversations"] if c.get("private")]

    def route(self, record: Recorded) -> tuple[int, dict[str, str], Any]:
        match = re.fullmatch(r"/api/v2/tickets/(\d+)", record.path)
        if match and int(match[1]) in self.tickets:
            ticket = self.tickets[int(match[1])]
            if record.method == "GET":
                shown = dict(ticket)
                if record.query.get("include") != ["conversations"]:
                    shown.pop("conversations")
                return 200, {}, shown
            if record.method == "PUT":
                return self._update(ticket, record.body)
        match = re.fullmatch(r"/api/v2/tickets/(\d+)/notes", record.path)
        if match and record.method == "POST" and int(match[1]) in self.tickets:
            ticket = self.tickets[int(match[1])]
            note = {"id": next(self.ids), "body": record.body["body"], "body_text": re.sub("<br>", "\n", record.body["body"]),
                    "private": record.body.get("private", True), "incoming": False, "user_id": 7, "attachments": [],
                    "created_at": _stamp()}
            ticket["conversations"].append(note)
            return 201, {}, note
        if record.path == "/api/v2/search/tickets" and record.method == "GET":
            rows = [{k: v for k, v in t.items() if k != "conversations"} for t in self.tickets.values() if t["status"] in (4, 5)]
            page = int(record.query.get("page", ["1"])[0])
            return 200, {}, {"results": rows if page == 1 else [], "total": len(rows)}
        return 404, {}, {"code": "not_found"}

    def _update(self, ticket: dict[str, Any], change: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        unknown = set(change) - {"custom_fields", "tags", "group_id", "status", "priority"}
        if unknown:
            return 400, {}, {"description": "Validation failed", "errors": [{"field": f, "code": "invalid_field"} for f in unknown]}
        ticket["custom_fields"].update(change.get("custom_fields") or {})
        if "tags" in change:
            ticket["tags"] = list(change["tags"])  # Freshdesk replaces the list
        if change.get("group_id") is not None:
            ticket["group_id"] = change["group_id"]
        ticket["updated_at"] = _stamp()
        return 200, {}, {k: v for k, v in ticket.items() if k != "conversations"}


# -- signing, as Zendesk does ---------------------------------------------------------------------------
def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


def zendesk_headers(secret: str, body: bytes, *, sent: datetime | None = None) -> dict[str, str]:
    stamp = (sent or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"content-type": "application/json", "x-zendesk-webhook-signature-timestamp": stamp,
            "x-zendesk-webhook-signature": zendesk_signature(secret, stamp, body)}


def zendesk_created_event(ticket_id: int) -> bytes:
    """An event-subscription payload, as Zendesk sends it for ticket.created."""
    return json.dumps({
        "account_id": 11223344, "id": str(uuid.uuid4()), "subject": f"zen:ticket:{ticket_id}",
        "time": _stamp(), "type": "zen:event-type:ticket.created", "zendesk_event_version": "2022-11-06",
        "detail": {"id": str(ticket_id), "status": "NEW", "subject": "(the ticket's subject)", "requester_id": "501"},
        "event": {},
    }).encode()


# -- the service these tests run against -----------------------------------------------------------------
@dataclass
class ConnectorService:
    backend: str
    url: str
    database: Database
    service: EmbeddedService
    admin_key: str
    model_bundle: Path

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.admin_key}"}, timeout=60)

    def tenant_with_model(self) -> str:
        """A new tenant's admin key; the tenant has the small support_ticket model, its own."""
        with self.client() as client:
            response = client.post("/v1/keys", json={"tenant": f"t-{uuid.uuid4().hex[:10]}", "admin": True})
            assert response.status_code == 201, response.text
            key = response.json()["key"]
        with self.client(key) as client:
            response = client.post("/v1/models", json={"bundle_path": str(self.model_bundle), "activate": True, "scope": "tenant"})
            assert response.status_code == 201, response.text
        return key


@pytest.fixture(scope="session")
def connector_bundle(tmp_path_factory) -> Path:
    """A tiny support_ticket network (about ten seconds), like test_retention_every_copy's."""
    bundle = tmp_path_factory.mktemp("models") / "support-ticket-connectors"
    return train_sample_model("support_ticket", bundle, rows=24, epochs=1, tiny=True, preset="network")


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def connector_service(request, tmp_path_factory, connector_bundle) -> Iterator[ConnectorService]:
    """The real service (API over HTTP, in-process worker) allowed to reach the fakes on loopback,
    on a database of its own: other suites' global models must not answer for the tenants here
    (one test needs a tenant with no model at all)."""
    data_dir = tmp_path_factory.mktemp(f"connectors-{request.param}")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database()) if request.param == "postgresql" else f"sqlite:///{data_dir / 'twinlens.db'}"
        yield from _connector_service(request.param, url, data_dir, tmp_path_factory, connector_bundle)


def _connector_service(backend: str, url: str, data_dir, tmp_path_factory, connector_bundle) -> Iterator[ConnectorService]:
    roots = [tmp_path_factory.getbasetemp()]
    settings = service_settings(data_dir, url, model_roots=roots, allow_private_helpdesks=True,
                                connector_retry_base_seconds=0.05, connector_max_retry_after_seconds=5.0)
    database = Database(settings.resolved_database_url)
    upgrade(database.engine)
    with database.session() as session:
        _, admin_key = keys.create_key(session, f"connectors-admin-{backend}", platform_admin=True)
    service = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
    try:
        yield ConnectorService(backend, service.url, database, service, admin_key, connector_bundle)
    finally:
        service.close()


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    fake = FakeZendesk()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def freshdesk() -> Iterator[FakeFreshdesk]:
    fake = FakeFreshdesk()
    try:
        yield fake
    finally:
        fake.close()


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")
