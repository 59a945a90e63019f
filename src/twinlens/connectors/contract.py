"""The connector contract: what a helpdesk connector declares and does.

A connector is stateless: every call gets the configuration it needs (credentials opened
by the caller, the field/tag mapping, a Transport bound to the helpdesk). Services own the
rows, the sealing of credentials, deduplication and scheduling.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from twinlens.contract.errors import InputError, TwinLensError


class ConnectorError(TwinLensError):
    """Something the helpdesk said or sent cannot be used (the message says what)."""


class IntakeRefused(ConnectorError):
    """An incoming webhook failed its authentication: bad or missing signature or secret,
    or a stale timestamp. The API answers 401 and nothing is stored."""


class EventIgnored(ConnectorError):
    """A verified webhook about something that needs no decision (a private comment, a
    status change): answered 202 and dropped."""


class HelpdeskError(ConnectorError):
    """A call to the helpdesk failed for good (after its retries)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class TicketEvent:
    """What an incoming webhook is about. `trigger_id` names the comment or update that
    fired it (the dedupe key with the ticket id); None when the payload does not say, in
    which case the ticket's latest comment, read when fetching, names it."""

    ticket_id: str
    trigger_id: str | None = None
    event_type: str = "ticket"


@dataclass(frozen=True)
class Attachment:
    url: str
    file_name: str
    content_type: str | None = None
    size: int | None = None

    @property
    def is_image(self) -> bool:
        kind = (self.content_type or "").lower()
        return kind.startswith("image/") or self.file_name.lower().endswith((".jpg", ".jpeg", ".png", ".webp"))


@dataclass(frozen=True)
class Ticket:
    """A ticket as the connector read it: enough for a job and for a safe write-back."""

    id: str
    subject: str | None
    description: str | None
    latest_customer_comment: str | None
    # The comment or conversation the ticket ends with now: names the trigger when the
    # webhook did not.
    latest_comment_id: str | None
    attachments: tuple[Attachment, ...] = ()
    tags: tuple[str, ...] = ()
    custom_fields: Mapping[str, Any] = field(default_factory=dict)
    # Zendesk: updated_at, the `updated_stamp` of a safe update.
    updated_stamp: str | None = None
    status: str | None = None

    def job_text(self) -> str | None:
        """The ticket body a job reads: the description, then the customer's latest comment
        when it says something the description does not."""
        parts = [part.strip() for part in (self.description, self.latest_customer_comment) if part and part.strip()]
        if len(parts) == 2 and parts[1] in parts[0]:
            parts = parts[:1]
        return "\n\n".join(parts) or None


@dataclass(frozen=True)
class FieldMapping:
    """Where a decision goes on a ticket (configured per connector).

    fields: decision key -> helpdesk field (Zendesk custom field id, Freshdesk `cf_` name);
    tag_prefix: tags `<prefix>fault_<label>`, `<prefix>severity_<label>`;
    review_tag / review_group: what `needs_review` adds (a tag, and the group it moves to).
    """

    fields: Mapping[str, str] = field(default_factory=dict)
    tag_prefix: str = "twinlens_"
    tagged: tuple[str, ...] = ("fault", "severity")
    review_tag: str = "twinlens_needs_review"
    review_group: str | None = None


@dataclass(frozen=True)
class WriteBack:
    """What goes onto a ticket, already rendered (connectors/notes.py)."""

    fields: Mapping[str, Any]
    tags: tuple[str, ...]
    note: str
    group: str | None = None


@dataclass(frozen=True)
class HistoricTicket:
    """A closed ticket for the back-fill: its text, its image attachments, its resolution
    fields read through the mapping."""

    ticket: Ticket
    labels: Mapping[str, str | None]
    created_at: str | None = None


@dataclass(frozen=True)
class Download:
    data: bytes
    media_type: str | None


class Transport(Protocol):
    """HTTP to one helpdesk, given by services: each call goes through the SSRF guard, only to
    the helpdesk's hosts, with 429 Retry-After and 5xx backoff, and is logged per ticket."""

    def request(self, method: str, path: str, *, ticket_id: str | None = None, json: Any = None,
                params: Mapping[str, Any] | None = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """`path` is relative to the helpdesk's base URL (or a full URL on one of its hosts).
        Raises HelpdeskError when the final answer's status is not in `ok`."""
        ...

    def download(self, url: str, *, ticket_id: str | None = None) -> Download:
        """An attachment, within the upload size limit; InputError when its host is not the
        helpdesk's (nor allow-listed) or the guard refuses it."""
        ...


class Connector(ABC):
    """One helpdesk. Subclasses are registered under the `twinlens.connectors` entry points."""

    name: str = ""
    title: str = ""
    # Credential names: required ones must be given when configuring; the webhook secret
    # authenticates the helpdesk's webhooks (a signing secret or a shared secret).
    required_credentials: tuple[str, ...] = ()
    optional_credentials: tuple[str, ...] = ()

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        missing = [name for name in self.required_credentials if not credentials.get(name)]
        if missing:
            raise InputError("credentials", f"{self.title or self.name} needs {', '.join(missing)}")
        known = set(self.required_credentials) | set(self.optional_credentials)
        unknown = sorted(set(credentials) - known)
        if unknown:
            raise InputError("credentials", f"unknown credential(s) {unknown}; {self.name} takes {sorted(known)}")

    def check_base_url(self, base_url: str) -> str:
        """The helpdesk's base URL, normalised (no trailing slash); InputError when unusable."""
        if any(char.isspace() or ord(char) < 32 for char in base_url.strip()):
            raise InputError("base_url", "a URL holds no spaces or control characters")
        try:
            url = httpx.URL(base_url.strip())
        except httpx.InvalidURL as exc:
            raise InputError("base_url", f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise InputError("base_url", "give the helpdesk's https URL, e.g. https://acme.example.com")
        if url.query or url.fragment or url.userinfo:
            raise InputError("base_url", "the URL may hold no credentials, query or fragment")
        return str(url).rstrip("/")

    @abstractmethod
    def auth(self, credentials: Mapping[str, str]) -> httpx.Auth:
        """How calls to the helpdesk authenticate."""

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, credentials: Mapping[str, str], now: datetime,
               tolerance_seconds: float) -> None:
        """Raise IntakeRefused unless the webhook comes from the helpdesk."""

    @abstractmethod
    def parse_event(self, payload: Any) -> TicketEvent:
        """The ticket (and trigger) a verified webhook payload names; ConnectorError otherwise."""

    @abstractmethod
    def fetch_ticket(self, transport: Transport, ticket_id: str) -> Ticket:
        """The ticket with its comments and attachments."""

    @abstractmethod
    def write_back(self, transport: Transport, ticket: Ticket, change: WriteBack) -> None:
        """Put fields, tags and a private note on the ticket without overwriting an agent's
        concurrent edit."""

    @abstractmethod
    def closed_tickets(self, transport: Transport, limit: int, mapping: FieldMapping) -> list[HistoricTicket]:
        """The latest `limit` closed (or solved) tickets, newest first, with their labels."""


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so the time to refuse says nothing about the secret."""
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
