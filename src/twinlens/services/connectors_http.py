"""HTTP to one helpdesk: the Transport that connectors are handed.

Every call and download:
- goes only to the helpdesk's own hosts (its base URL's host, plus the hosts the connector
  allow-lists for attachments, e.g. a CDN); any other host is refused before connecting;
- passes the SSRF guard: the URL's addresses and then the address actually connected to
  must be public, unless `allow_private_helpdesks` (a helpdesk on an intranet);
- carries the helpdesk's credentials only to the helpdesk's own host, never to another;
- is retried: a 429 after its Retry-After (capped by `connector_max_retry_after_seconds`),
  a 5xx or a lost connection after an exponential backoff with jitter;
- is recorded (method, URL without its query, status, error, attempt, duration) for the
  ticket's event log. Credentials travel in headers, so no record holds them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import httpx

from twinlens.connectors.contract import Download, HelpdeskError
from twinlens.contract.errors import InputError
from twinlens.db.base import utcnow
from twinlens.services.fetch import read_capped
from twinlens.services.netguard import check_url
from twinlens.services.peer_guard import PeerRefused, refuse_non_public_peers
from twinlens.settings import Settings

FIELD = "attachment"
USER_AGENT = "TwinLens-Connectors/1"


@dataclass(frozen=True)
class CallRecord:
    kind: str  # call or attachment
    method: str
    url: str
    ticket_id: str | None
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime  # when the call began (the log is written after the step)


@dataclass
class GuardedTransport:
    base_url: str
    auth: httpx.Auth
    settings: Settings
    # Hosts attachments may also come from (besides the base URL's).
    extra_hosts: Collection[str] = ()
    sleep: Callable[[float], None] = time.sleep
    records: list[CallRecord] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._home = _host(self.base_url)
        self._hosts = {self._home, *(host.lower() for host in self.extra_hosts)}
        self._client = httpx.Client(timeout=self.settings.connector_timeout_seconds, follow_redirects=False,
                                    trust_env=False, headers={"user-agent": USER_AGENT})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "GuardedTransport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the Transport protocol -------------------------------------------------------------
    def request(self, method: str, path: str, *, ticket_id: str | None = None, json: Any = None,
                params: Mapping[str, Any] | None = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        if _host(url) != self._home:  # API calls (a next_page URL too) only to the helpdesk itself
            raise HelpdeskError(f"refused: {_host(url)} is not the helpdesk's host {self._home}")
        retries = self.settings.connector_max_retries
        for attempt in range(1, retries + 2):
            response = self._send(method, url, ticket_id, attempt, json=json, params=params)
            last = attempt > retries
            if response is None:
                if last:
                    raise HelpdeskError(f"{method} {_shown(url)}: no answer after {attempt} attempts")
                self.sleep(self._backoff(attempt))
                continue
            if response.status_code == 429 and not last:
                self.sleep(self._retry_after(response, method, url))
                continue
            if response.status_code >= 500 and not last:
                self.sleep(self._backoff(attempt))
                continue
            if response.status_code not in ok:
                raise HelpdeskError(f"{method} {_shown(url)} answered HTTP {response.status_code}", response.status_code)
            return response
        raise AssertionError("unreachable")

    def download(self, url: str, *, ticket_id: str | None = None) -> Download:
        for _ in range(self.settings.url_fetch_max_redirects + 1):
            self._check_attachment_host(url)
            check_url(url, field=FIELD, allow_private=self.settings.allow_private_helpdesks)
            fetched, location = self._get_attachment(url, ticket_id)
            if location is None:
                return fetched
            url = urljoin(url, location)
        raise InputError(FIELD, f"more than {self.settings.url_fetch_max_redirects} redirects")

    # -- helpers ----------------------------------------------------------------------------
    def _send(self, method: str, url: str, ticket_id: str | None, attempt: int, **kwargs: Any) -> httpx.Response | None:
        """One attempt; None when no answer came (the connection failed or timed out)."""
        started = time.perf_counter()
        try:
            check_url(url, field="base_url", allow_private=self.settings.allow_private_helpdesks)
            response = self._client.request(method, url, auth=self.auth, extensions={"trace": self._guard()}, **kwargs)
        except (InputError, PeerRefused) as exc:
            self._record("call", method, url, ticket_id, attempt, None, _reason(exc), started)
            raise HelpdeskError(_reason(exc)) from None
        except httpx.HTTPError as exc:
            self._record("call", method, url, ticket_id, attempt, None, f"{exc.__class__.__name__}: {exc}", started)
            return None
        error = None if response.is_success else f"HTTP {response.status_code}"
        self._record("call", method, url, ticket_id, attempt, response.status_code, error, started)
        return response

    def _get_attachment(self, url: str, ticket_id: str | None) -> tuple[Download, str | None]:
        started = time.perf_counter()
        # The helpdesk's credentials go to the helpdesk's own host only, never to a CDN.
        auth = self.auth if _host(url) == self._home else None
        try:
            with self._client.stream("GET", url, auth=auth, extensions={"trace": self._guard(FIELD)}) as response:
                if response.is_redirect and "location" in response.headers:
                    self._record("attachment", "GET", url, ticket_id, 1, response.status_code, None, started)
                    return Download(b"", None), response.headers["location"]
                if response.status_code != 200:
                    raise InputError(FIELD, f"the helpdesk answered HTTP {response.status_code} for the attachment")
                data = read_capped(response, self.settings.max_upload_bytes, field=FIELD, noun="the attachment")
                self._record("attachment", "GET", url, ticket_id, 1, 200, None, started)
                kind = response.headers.get("content-type")
                return Download(data, kind.split(";", 1)[0].strip().lower() if kind else None), None
        except PeerRefused as exc:
            self._record("attachment", "GET", url, ticket_id, 1, None, exc.reason, started)
            raise InputError(FIELD, exc.reason) from None
        except InputError as exc:
            self._record("attachment", "GET", url, ticket_id, 1, None, exc.reason, started)
            raise
        except httpx.HTTPError as exc:
            reason = f"could not fetch the attachment: {exc.__class__.__name__}"
            self._record("attachment", "GET", url, ticket_id, 1, None, reason, started)
            raise InputError(FIELD, reason) from exc

    def _check_attachment_host(self, url: str) -> None:
        host = _host(url)
        if host not in self._hosts:
            raise InputError(FIELD, f"refused: {host or 'no host'} is not the helpdesk's host ({self._home}) and not "
                                    "allow-listed in the connector's attachment_hosts")

    def _guard(self, field_name: str = "base_url"):
        return refuse_non_public_peers(field_name, allow_private=self.settings.allow_private_helpdesks)

    def _retry_after(self, response: httpx.Response, method: str, url: str) -> float:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        cap = self.settings.connector_max_retry_after_seconds
        if wait is None:
            return self._backoff(1)
        if wait > cap:
            raise HelpdeskError(f"{method} {_shown(url)}: the helpdesk asks to wait {wait:.0f} s (Retry-After), more than "
                                f"connector_max_retry_after_seconds={cap:.0f}; the sweep tries again later", 429)
        return wait

    def _backoff(self, attempt: int) -> float:
        ceiling = self.settings.connector_retry_base_seconds * 2 ** (attempt - 1)
        return ceiling * (0.5 + 0.5 * self.rng.random())

    def _record(self, kind: str, method: str, url: str, ticket_id: str | None, attempt: int, status: int | None,
                error: str | None, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.records.append(CallRecord(kind, method, _shown(url), ticket_id, attempt, status, error, elapsed * 1000.0,
                                       utcnow() - timedelta(seconds=elapsed)))




def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - utcnow()).total_seconds()) if when.tzinfo else None


def _host(url: str) -> str:
    try:
        return (httpx.URL(url).host or "").lower()
    except httpx.InvalidURL:
        return ""


def _shown(url: str) -> str:
    """The URL without its query: a signed attachment link's token stays out of the log."""
    try:
        return str(httpx.URL(url).copy_with(query=None, fragment=None))
    except httpx.InvalidURL:
        return "(an invalid URL)"


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc)
