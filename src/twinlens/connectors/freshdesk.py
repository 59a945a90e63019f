"""Freshdesk: automation-rule webhooks in, the Tickets API out.

Automation webhooks carry no signature, so each connector has a secret of its own that the
rule sends, as the `X-TwinLens-Secret` header or as the basic-auth password, compared in
constant time. The rule's body is what the admin wrote (docs/connectors/freshdesk.md:
`{"ticket_id": "{{ticket.id}}"}`).

Write-back: `PUT /api/v2/tickets/{id}` with the mapped custom fields and the tags (Freshdesk
replaces the tag list, so the ticket's own tags are sent with the new ones), then a private
note, `POST /api/v2/tickets/{id}/notes`. Plain httpx: every call goes through the
Transport's SSRF guard and call log.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from twinlens.connectors.contract import (
    Attachment,
    Connector,
    ConnectorError,
    FieldMapping,
    HelpdeskError,
    HistoricTicket,
    IntakeRefused,
    Ticket,
    TicketEvent,
    Transport,
    WriteBack,
    same_secret,
)

SECRET_HEADER = "x-twinlens-secret"
CLOSED_QUERY = '"status:5 OR status:4"'  # closed or resolved
SEARCH_PAGES = 10  # Freshdesk's search stops at page 10 (30 tickets a page)


class FreshdeskConnector(Connector):
    name = "freshdesk"
    title = "Freshdesk"
    required_credentials = ("api_key", "webhook_secret")

    def auth(self, credentials: Mapping[str, str]) -> httpx.Auth:
        return httpx.BasicAuth(credentials["api_key"], "X")  # Freshdesk: the key as user, any password

    # -- intake ---------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, credentials: Mapping[str, str], now: datetime,
               tolerance_seconds: float) -> None:
        expected = credentials["webhook_secret"]
        given = headers.get(SECRET_HEADER) or _basic_password(headers.get("authorization"))
        if not same_secret(given, expected):
            raise IntakeRefused("the webhook carries no valid connector secret (X-TwinLens-Secret or basic auth)")

    def parse_event(self, payload: Any) -> TicketEvent:
        if not isinstance(payload, dict):
            raise ConnectorError("the webhook body must be a JSON object")
        inner = payload.get("freshdesk_webhook") if isinstance(payload.get("freshdesk_webhook"), dict) else payload
        ticket = inner.get("ticket") if isinstance(inner.get("ticket"), dict) else inner
        ticket_id = ticket.get("ticket_id", ticket.get("id"))
        text = str(ticket_id).strip() if isinstance(ticket_id, (str, int)) and not isinstance(ticket_id, bool) else ""
        if not text.isdigit():
            raise ConnectorError("the webhook names no ticket: send {\"ticket_id\": \"{{ticket.id}}\"} (docs/connectors/freshdesk.md)")
        trigger = inner.get("conversation_id") or inner.get("update_id")
        return TicketEvent(text, str(trigger)[:100] if isinstance(trigger, (str, int)) and str(trigger) else None, "automation")

    # -- reading --------------------------------------------------------------------------
    def fetch_ticket(self, transport: Transport, ticket_id: str) -> Ticket:
        response = transport.request("GET", f"/api/v2/tickets/{ticket_id}", ticket_id=ticket_id,
                                     params={"include": "conversations"})
        body = response.json()
        if not isinstance(body, dict) or body.get("id") is None:
            raise HelpdeskError("Freshdesk answered without a ticket", response.status_code)
        return _ticket(body)

    def closed_tickets(self, transport: Transport, limit: int, mapping: FieldMapping) -> list[HistoricTicket]:
        found: list[HistoricTicket] = []
        for page in range(1, SEARCH_PAGES + 1):
            body = transport.request("GET", "/api/v2/search/tickets", params={"query": CLOSED_QUERY, "page": page}).json()
            rows = [row for row in body.get("results") or [] if isinstance(row, dict) and row.get("id") is not None]
            rows.sort(key=lambda row: str(row.get("updated_at") or ""), reverse=True)
            for row in rows:
                if len(found) >= limit:
                    return found
                ticket = self.fetch_ticket(transport, str(row["id"]))
                labels = {key: _label(ticket.custom_fields.get(target)) for key, target in mapping.fields.items()}
                found.append(HistoricTicket(ticket, labels, row.get("created_at")))
            if not rows or len(found) >= limit:
                break
        return found

    # -- writing --------------------------------------------------------------------------
    def write_back(self, transport: Transport, ticket: Ticket, change: WriteBack) -> None:
        update: dict[str, Any] = {"tags": sorted(set(ticket.tags) | set(change.tags))}
        if change.fields:
            update["custom_fields"] = dict(change.fields)
        if change.group:
            update["group_id"] = int(change.group) if str(change.group).isdigit() else change.group
        # Fields and tags first (setting them twice is harmless), the note last: a failure
        # before it leaves no note to be written a second time on retry.
        transport.request("PUT", f"/api/v2/tickets/{ticket.id}", ticket_id=ticket.id, json=update)
        note = "<br>".join(html.escape(line) for line in change.note.splitlines())
        transport.request("POST", f"/api/v2/tickets/{ticket.id}/notes", ticket_id=ticket.id,
                          json={"body": note, "private": True}, ok=(200, 201))


def _ticket(body: dict[str, Any]) -> Ticket:
    conversations = [c for c in body.get("conversations") or [] if isinstance(c, dict)]
    customer = [c for c in conversations if c.get("incoming") and not c.get("private")]
    latest = customer[-1] if customer else None
    attachments = [_attachment(a) for c in reversed(customer) for a in c.get("attachments") or [] if isinstance(a, dict)]
    attachments += [_attachment(a) for a in body.get("attachments") or [] if isinstance(a, dict)]
    return Ticket(
        id=str(body["id"]), subject=body.get("subject"), description=body.get("description_text") or body.get("description"),
        latest_customer_comment=(latest.get("body_text") or latest.get("body")) if latest else None,
        latest_comment_id=f"conversation:{latest['id']}" if latest and latest.get("id") is not None else "description",
        attachments=tuple(a for a in attachments if a.url), tags=tuple(body.get("tags") or ()),
        custom_fields=dict(body.get("custom_fields") or {}), updated_stamp=body.get("updated_at"),
        status=str(body.get("status")) if body.get("status") is not None else None,
    )


def _attachment(raw: dict[str, Any]) -> Attachment:
    return Attachment(url=str(raw.get("attachment_url") or ""), file_name=str(raw.get("name") or ""),
                      content_type=raw.get("content_type"), size=raw.get("size"))


def _basic_password(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
