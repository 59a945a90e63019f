"""Zendesk: trigger webhooks and event subscriptions in, the Tickets API out.

Webhooks are signed: `X-Zendesk-Webhook-Signature` is base64(HMAC-SHA256(signing secret,
`X-Zendesk-Webhook-Signature-Timestamp` + raw body)). A trigger's body is what the admin
wrote (docs/connectors/zendesk.md: `{"ticket_id": "{{ticket.id}}"}`); an event
subscription sends `zen:event-type:ticket.created` and `...ticket.comment_added`.

Write-back is one `PUT /api/v2/tickets/{id}.json`: mapped `custom_fields`,
`additional_tags` (plain `tags` would replace every tag), a private comment, and
`safe_update` with the `updated_stamp` read, so an agent's edit made meanwhile is not
overwritten: Zendesk answers 409, the ticket is read again and the update retried.

Plain httpx, not zenpy: every call must go through the SSRF guard and the per-ticket call
log of the Transport, and zenpy brings its own requests session and retry policy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from twinlens.connectors.contract import (
    Attachment,
    Connector,
    ConnectorError,
    EventIgnored,
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
from twinlens.contract.errors import InputError

SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
CREATED = "zen:event-type:ticket.created"
COMMENT_ADDED = "zen:event-type:ticket.comment_added"
SAFE_UPDATE_TRIES = 4
COMMENT_PAGES = 10
SEARCH_PAGE = 100
CLOSED_QUERY = "type:ticket status>=solved"


class BearerAuth(httpx.Auth):
    def __init__(self, token: str):
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = self._header
        yield request


class ZendeskConnector(Connector):
    name = "zendesk"
    title = "Zendesk"
    required_credentials = ("webhook_secret",)
    # An API token with the agent's email, or an OAuth access token.
    optional_credentials = ("email", "api_token", "oauth_token")

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        super().check_credentials(credentials)
        if not credentials.get("oauth_token") and not (credentials.get("email") and credentials.get("api_token")):
            raise InputError("credentials", "Zendesk needs email and api_token, or oauth_token")

    def auth(self, credentials: Mapping[str, str]) -> httpx.Auth:
        if credentials.get("oauth_token"):
            return BearerAuth(credentials["oauth_token"])
        return httpx.BasicAuth(f"{credentials['email']}/token", credentials["api_token"])

    # -- intake ---------------------------------------------------------------------------
    def verify(self, headers: Mapping[str, str], body: bytes, credentials: Mapping[str, str], now: datetime,
               tolerance_seconds: float) -> None:
        signature, stamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
        if not signature or not stamp:
            raise IntakeRefused("the request carries no X-Zendesk-Webhook-Signature and timestamp")
        digest = hmac.new(credentials["webhook_secret"].encode(), stamp.encode() + body, hashlib.sha256).digest()
        if not same_secret(signature, base64.b64encode(digest).decode()):
            raise IntakeRefused("the webhook signature does not match the connector's signing secret")
        try:
            sent = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise IntakeRefused("the signature timestamp is not an ISO 8601 time") from None
        if sent.tzinfo is None or abs((now - sent).total_seconds()) > tolerance_seconds:
            raise IntakeRefused(f"the signature timestamp is more than {tolerance_seconds:.0f} s away from now (a replay?)")

    def parse_event(self, payload: Any) -> TicketEvent:
        if not isinstance(payload, dict):
            raise ConnectorError("the webhook body must be a JSON object")
        kind = payload.get("type")
        if isinstance(kind, str) and kind.startswith("zen:event-type:"):
            return _subscription_event(payload, kind)
        ticket = payload.get("ticket") if isinstance(payload.get("ticket"), dict) else payload
        ticket_id = ticket.get("ticket_id", ticket.get("id"))
        trigger = payload.get("comment_id") or payload.get("update_id")
        return TicketEvent(_ticket_id(ticket_id), _optional_id(trigger), "trigger")

    # -- reading --------------------------------------------------------------------------
    def fetch_ticket(self, transport: Transport, ticket_id: str) -> Ticket:
        ticket = _object(transport.request("GET", f"/api/v2/tickets/{ticket_id}.json", ticket_id=ticket_id), "ticket")
        comments = self._comments(transport, ticket_id)
        return _ticket(ticket, comments)

    def _comments(self, transport: Transport, ticket_id: str) -> list[dict[str, Any]]:
        comments: list[dict[str, Any]] = []
        path: str | None = f"/api/v2/tickets/{ticket_id}/comments.json"
        for _ in range(COMMENT_PAGES):
            if path is None:
                break
            body = transport.request("GET", path, ticket_id=ticket_id).json()
            comments += [c for c in body.get("comments") or [] if isinstance(c, dict)]
            path = body.get("next_page")
        return comments

    def closed_tickets(self, transport: Transport, limit: int, mapping: FieldMapping) -> list[HistoricTicket]:
        found: list[HistoricTicket] = []
        path: str | None = "/api/v2/search.json"
        params: dict[str, Any] | None = {"query": CLOSED_QUERY, "sort_by": "updated_at", "sort_order": "desc",
                                         "per_page": min(SEARCH_PAGE, limit)}
        while path and len(found) < limit:
            body = transport.request("GET", path, params=params).json()
            for row in body.get("results") or []:
                if len(found) >= limit or not isinstance(row, dict) or row.get("id") is None:
                    continue
                ticket = _ticket(row, self._comments(transport, str(row["id"])))
                labels = {key: _label(ticket.custom_fields.get(str(target))) for key, target in mapping.fields.items()}
                found.append(HistoricTicket(ticket, labels, row.get("created_at")))
            path, params = body.get("next_page"), None  # next_page is a whole URL, its query included
        return found

    # -- writing --------------------------------------------------------------------------
    def write_back(self, transport: Transport, ticket: Ticket, change: WriteBack) -> None:
        stamp = ticket.updated_stamp
        for attempt in range(1, SAFE_UPDATE_TRIES + 1):
            try:
                transport.request("PUT", f"/api/v2/tickets/{ticket.id}.json", ticket_id=ticket.id,
                                  json={"ticket": _update_body(change, stamp)})
                return
            except HelpdeskError as exc:
                if exc.status_code != 409 or attempt == SAFE_UPDATE_TRIES:
                    raise
            # An agent changed the ticket since it was read: read the new stamp and retry;
            # additional_tags and the new comment merge with whatever the agent did.
            fresh = _object(transport.request("GET", f"/api/v2/tickets/{ticket.id}.json", ticket_id=ticket.id), "ticket")
            stamp = fresh.get("updated_at")


def _update_body(change: WriteBack, stamp: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "comment": {"body": change.note, "public": False},
        "additional_tags": list(change.tags),
        "safe_update": True,
        "updated_stamp": stamp,
    }
    if change.fields:
        body["custom_fields"] = [{"id": _field_id(target), "value": value} for target, value in change.fields.items()]
    if change.group:
        body["group_id"] = _field_id(change.group)
    return body


def _subscription_event(payload: dict[str, Any], kind: str) -> TicketEvent:
    detail = payload.get("detail") if isinstance(payload.get("detail"), dict) else {}
    ticket_id = detail.get("id") or str(payload.get("subject", "")).removeprefix("zen:ticket:")
    if kind == CREATED:
        return TicketEvent(_ticket_id(ticket_id), None, kind)
    if kind == COMMENT_ADDED:
        event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
        comment = event.get("comment") if isinstance(event.get("comment"), dict) else {}
        if comment.get("is_public") is False:  # an agent's private note (TwinLens's own, too)
            raise EventIgnored("a private comment needs no decision")
        return TicketEvent(_ticket_id(ticket_id), _optional_id(comment.get("id")), kind)
    raise EventIgnored(f"{kind} needs no decision (ticket.created and ticket.comment_added do)")


def _ticket(ticket: dict[str, Any], comments: list[dict[str, Any]]) -> Ticket:
    public = [c for c in comments if c.get("public", True)]
    requester = ticket.get("requester_id")
    customer = [c for c in public if requester is None or c.get("author_id") == requester]
    latest = customer[-1] if len(customer) > 1 else None  # the first is the description
    attachments = [
        Attachment(url=str(a["content_url"]), file_name=str(a.get("file_name") or ""), content_type=a.get("content_type"),
                   size=a.get("size"))
        for comment in reversed(public) for a in comment.get("attachments") or []
        if isinstance(a, dict) and a.get("content_url")
    ]
    fields = {str(f.get("id")): f.get("value") for f in ticket.get("custom_fields") or [] if isinstance(f, dict)}
    return Ticket(
        id=str(ticket.get("id")), subject=ticket.get("subject"), description=ticket.get("description"),
        latest_customer_comment=(latest.get("plain_body") or latest.get("body")) if latest else None,
        latest_comment_id=str(public[-1]["id"]) if public and public[-1].get("id") is not None else None,
        attachments=tuple(attachments), tags=tuple(ticket.get("tags") or ()), custom_fields=fields,
        updated_stamp=ticket.get("updated_at"), status=ticket.get("status"),
    )


def _object(response: httpx.Response, key: str) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise HelpdeskError(f"Zendesk answered without a {key!r} object", response.status_code)
    return body[key]


def _ticket_id(value: Any) -> str:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isdigit():
        raise ConnectorError("the webhook names no ticket: send {\"ticket_id\": \"{{ticket.id}}\"} (docs/connectors/zendesk.md)")
    return text


def _optional_id(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:100]
    return None


def _field_id(target: str) -> int | str:
    return int(target) if str(target).isdigit() else target


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
