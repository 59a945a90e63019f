"""Signed webhooks (Standard Webhooks): a delivery row per event, attempts logged, retried
with exponential backoff and jitter.

Sending is split in three so no transaction stays open across the network call: lease
the delivery (short transaction), POST it (no database), record the outcome (short
transaction, which schedules the retry after commit).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from twinlens.contract.errors import InputError
from twinlens.db.base import utcnow
from twinlens.db.models import Job, WebhookAttempt, WebhookDelivery
from twinlens.db.repositories import AuditRepository, JobRepository, TenantRepository, WebhookRepository
from twinlens.db.session import after_commit
from twinlens.queue import publish_webhook
from twinlens.services.errors import Conflict, NotFound
from twinlens.services.keys import Principal
from twinlens.services import webhook_secrets
from twinlens.services.netguard import check_url
from twinlens.services.paging import PageRequest, next_cursor
from twinlens.services.peer_guard import PeerRefused, refuse_non_public_peers
from twinlens.services.views import job_view
from twinlens.settings import Settings

EVENT_FOR_STATUS = {"succeeded": "job.succeeded", "failed": "job.failed"}
# The sender's lease outlives the request timeout, so a sweep never sends it twice at once.
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class OutgoingWebhook:
    delivery_id: uuid.UUID
    url: str
    body: str
    secret: str
    attempt: int
    # Secrets still in a rotation's overlap: each adds a signature to the one header.
    previous_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None
    duration_ms: float
    permanent: bool = False  # retrying cannot help (the URL is refused)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def enqueue_job_event(session: Session, job: Job) -> WebhookDelivery | None:
    """Create the delivery for a finished job that asked for a webhook."""
    event_type = EVENT_FOR_STATUS.get(job.status)
    if not job.webhook_url or event_type is None:
        return None
    now = utcnow()
    payload = {"type": event_type, "timestamp": now.isoformat(), "data": event_data(job)}
    delivery = WebhookRepository(session).add(
        WebhookDelivery(
            job_id=job.id, tenant_id=job.tenant_id, url=job.webhook_url, event_type=event_type,
            payload=payload, status="pending", next_attempt_at=now,
        )
    )
    delivery_id = delivery.id
    after_commit(session, lambda: publish_webhook(delivery_id, 0.0))
    return delivery


def event_data(job: Job) -> dict:
    """The job as GET /v1/jobs/{id} shows it, minus the submitted texts: the caller has
    them, and a copy kept in the delivery row would outlive the inputs' retention."""
    data = job_view(job).model_dump(mode="json")
    data["inputs"] = {key: value for key, value in data["inputs"].items() if key != "texts"}
    return data


def lease_for_sending(session: Session, delivery_id: uuid.UUID, settings: Settings) -> OutgoingWebhook | None:
    now = utcnow()
    until = now + timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    repo = WebhookRepository(session)
    if not repo.lease(delivery_id, now, until):
        return None
    delivery = repo.get(delivery_id)
    tenant = TenantRepository(session).get(delivery.tenant_id)
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
    current, *previous = webhook_secrets.signing_secrets(session, tenant, webhook_secrets.secret_box(settings), now)
    return OutgoingWebhook(delivery.id, delivery.url, body, current, delivery.attempts + 1, tuple(previous))


def message_id(delivery_id: uuid.UUID) -> str:
    """Stable across retries, so a receiver can drop duplicates."""
    return f"msg_{delivery_id.hex}"


def signed_headers(message: OutgoingWebhook, when: datetime) -> dict[str, str]:
    msg_id = message_id(message.delivery_id)
    # Standard Webhooks: several signatures, space-separated; a receiver accepts any it can verify.
    signature = " ".join(Webhook(secret).sign(msg_id, when, message.body) for secret in (message.secret, *message.previous_secrets))
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "user-agent": "TwinLens-Webhooks/1",
    }


def send_signed(message: OutgoingWebhook, settings: Settings) -> AttemptOutcome:
    started = time.perf_counter()
    try:
        check_url(message.url, field="webhook_url", allow_private=settings.allow_private_webhooks)
    except InputError as exc:
        return AttemptOutcome(None, exc.reason, 0.0, permanent=True)
    headers = signed_headers(message, utcnow())
    # The address connected to is checked too, before the body goes out (DNS rebinding).
    guard = refuse_non_public_peers("webhook_url", allow_private=settings.allow_private_webhooks)
    try:
        with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False) as client:
            response = client.post(message.url, content=message.body.encode(), headers=headers, extensions={"trace": guard})
    except PeerRefused as exc:
        return AttemptOutcome(None, exc.reason, _ms_since(started), permanent=True)
    except httpx.HTTPError as exc:
        return AttemptOutcome(None, f"{exc.__class__.__name__}: {exc}", _ms_since(started))
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return AttemptOutcome(response.status_code, error, _ms_since(started))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def record_attempt(
    session: Session, message: OutgoingWebhook, outcome: AttemptOutcome, settings: Settings, rng: random.Random | None = None
) -> WebhookDelivery:
    repo = WebhookRepository(session)
    delivery = repo.get(message.delivery_id)
    now = utcnow()
    repo.add_attempt(WebhookAttempt(delivery_id=delivery.id, number=message.attempt, status_code=outcome.status_code,
                                    error=outcome.error, duration_ms=outcome.duration_ms, attempted_at=now))
    delivery.attempts = message.attempt
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.locked_until = None
    if outcome.ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "succeeded", now, None
    elif outcome.permanent or attempts_this_schedule(delivery) >= settings.webhook_max_attempts:
        # The dead letter: kept, listed by GET /v1/webhook-deliveries?status=failed, re-sent on request.
        delivery.status, delivery.next_attempt_at = "failed", None
    else:
        _schedule_retry(session, delivery, now, settings, rng or random.Random())
    return delivery


def _schedule_retry(session: Session, delivery: WebhookDelivery, now: datetime, settings: Settings, rng: random.Random) -> None:
    delay = backoff_seconds(attempts_this_schedule(delivery), settings.webhook_retry_base_seconds,
                            settings.webhook_retry_max_seconds, rng)
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery_id = delivery.id
    after_commit(session, lambda: publish_webhook(delivery_id, delay))


def backoff_seconds(attempts_made: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential (base * 2^(n-1), capped) with jitter over its upper half, so many
    failing receivers do not all retry in lockstep."""
    ceiling = min(cap, base * (2 ** max(0, attempts_made - 1)))
    return ceiling * (0.5 + 0.5 * rng.random())


def attempts_this_schedule(delivery: WebhookDelivery) -> int:
    """Attempts since the retry schedule began: at creation, or at the latest redelivery."""
    return delivery.attempts - (delivery.attempts_at_redelivery or 0)


def due_deliveries(session: Session) -> list[uuid.UUID]:
    return WebhookRepository(session).due(utcnow())


def list_deliveries(
    session: Session, principal: Principal, page: PageRequest, *, status: str | None = None,
) -> tuple[list[WebhookDelivery], str | None]:
    """One page of the tenant's deliveries, newest first (`status="failed"`: its dead letters)."""
    result = WebhookRepository(session).page_for_tenant(principal.tenant_id, status=status, after=page.after, limit=page.limit)
    return result.rows, next_cursor(result)


def redeliver(session: Session, principal: Principal, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Send a dead letter again, now, with a whole new retry schedule; its attempt log goes on."""
    repo = WebhookRepository(session)
    delivery = repo.get_for_tenant(delivery_id, principal.tenant_id)
    if delivery is None:  # another tenant's delivery is indistinguishable from none
        raise NotFound(f"no webhook delivery {delivery_id}")
    if not repo.reopen_failed(delivery.id, utcnow()):
        raise Conflict(f"webhook delivery {delivery_id} is {delivery.status}; only failed deliveries can be redelivered",
                       delivery_status=delivery.status)
    AuditRepository(session).record("webhook.redeliver", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"webhook_delivery:{delivery_id}")
    after_commit(session, lambda: publish_webhook(delivery_id, 0.0))
    session.refresh(delivery)
    return delivery


def deliveries_for_job(session: Session, principal: Principal, job_id: uuid.UUID) -> list[WebhookDelivery]:
    job = JobRepository(session).get_for_tenant(job_id, principal.tenant_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return WebhookRepository(session).for_job(job.id)
