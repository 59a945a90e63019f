"""A helpdesk ticket's trip: webhook in (202), fetch and submit on a worker, write back.

1. `receive_event` (the API, no API key: the helpdesk's signature or secret is checked):
   one `connector_tickets` row per (connector, ticket, triggering comment/update), so a
   webhook delivered twice finds its row and makes nothing new. A webhook that names no
   comment gets a provisional key (a digest of its body) until step 2 reads the ticket.
2. `fetch_and_submit` (a worker): read the ticket and its image attachments through the
   guarded Transport, name the trigger by the ticket's latest public comment (an event
   already handled under that name is a duplicate: no job), and submit a job whose
   Idempotency-Key is the row's id, so a retried step never makes a second job.
3. `write_back` (a worker, when the job finishes: `on_job_finished`): the decision as mapped
   fields, tags and a private note, once: the row moves submitted -> writing -> written.

No transaction stays open across a call to the helpdesk: each step claims its row in a
short transaction, talks to the helpdesk, and records the outcome in another. A step that
fails goes back to its start (a bounded number of times) for the sweep to take up again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.connectors import notes
from twinlens.connectors.contract import (
    ConnectorError,
    EventIgnored,
    HelpdeskError,
    IntakeRefused,
    Ticket,
)
from twinlens.connectors.registry import get_connector
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin
from twinlens.contract.registry import get_plugin
from twinlens.db.base import utcnow
from twinlens.db.connector_tables import ConnectorEvent, ConnectorTicket
from twinlens.db.models import FINISHED_STATUSES, Job
from twinlens.db.repositories import JobRepository
from twinlens.db.repositories.connectors import ConnectorRepository
from twinlens.db.session import Database, after_commit
from twinlens.queue import publish_connector_step
from twinlens.services import connectors
from twinlens.services.connectors_http import CallRecord
from twinlens.services.errors import NotFound, ServiceError, Unauthorized, Unprocessable
from twinlens.services.inputs import SubmittedInputs
from twinlens.services.keys import Principal
from twinlens.services.submission import JobSubmission, accept_job
from twinlens.services.views import ConnectorIntake
from twinlens.services.webhook_secrets import SecretBox, secret_box
from twinlens.settings import Settings

log = logging.getLogger(__name__)

# A job made for a ticket has the Idempotency-Key `connector:<row id>`: the key makes the
# submission exactly-once, and tells the finished job's hook which ticket it is for.
JOB_KEY_PREFIX = "connector:"
FETCH, WRITE_BACK = "fetch", "write_back"
MAX_BODY_BYTES = 256 * 1024


# -- 1. intake ---------------------------------------------------------------------------------
def receive_event(session: Session, settings: Settings, box: SecretBox, kind: str, connector_id: uuid.UUID,
                  headers: Mapping[str, str], body: bytes) -> ConnectorIntake:
    row = ConnectorRepository(session).get(connector_id)
    if row is None or row.kind != kind or not row.enabled:
        raise NotFound(f"no enabled {kind} connector {connector_id}")
    connector = get_connector(kind)
    if len(body) > MAX_BODY_BYTES:
        raise Unprocessable(f"the webhook body is over {MAX_BODY_BYTES} bytes")
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        connector.verify(lowered, body, connectors.open_credentials(row, box), utcnow(),
                         settings.connector_signature_tolerance_seconds)
    except IntakeRefused as exc:
        log.warning("connector %s refused a webhook: %s", row.id, exc)  # nothing stored: anyone can call this
        raise Unauthorized(str(exc)) from None
    try:
        event = connector.parse_event(json.loads(body))
    except EventIgnored as exc:
        _event(session, row.id, row.tenant_id, None, None, "ignored", detail=str(exc))
        return ConnectorIntake(status="ignored", ticket_id=None, reason=str(exc))
    except (ValueError, ConnectorError) as exc:
        raise Unprocessable(f"the webhook cannot be used: {exc}") from None
    trigger = event.trigger_id or "?" + hashlib.sha256(body).hexdigest()[:40]
    ticket, created = ConnectorRepository(session).add_ticket_once(ConnectorTicket(
        connector_id=row.id, tenant_id=row.tenant_id, ticket_id=event.ticket_id, trigger_id=trigger, status="received"))
    _event(session, row.id, row.tenant_id, ticket.id, event.ticket_id, "intake" if created else "duplicate",
           detail=f"{event.event_type}; trigger {event.trigger_id or 'not named (read from the ticket)'}")
    if created:
        row_id = ticket.id
        after_commit(session, lambda: publish_connector_step(row_id, FETCH))
    return ConnectorIntake(status="accepted" if created else "duplicate", ticket_id=event.ticket_id)


# -- 2. fetch and submit --------------------------------------------------------------------------
@dataclass(frozen=True)
class Claimed:
    row_id: uuid.UUID
    ticket_id: str
    provisional_trigger: bool
    job_id: uuid.UUID | None
    config: connectors.ConnectorConfig


def fetch_and_submit(db: Database, blobs: BlobStore, settings: Settings, row_id: uuid.UUID) -> str | None:
    """Step 2; the row's new status, or None when it was not ours to take."""
    claimed = _claim(db, settings, row_id, ("received",), "fetching")
    if claimed is None:
        return None
    config = claimed.config
    with config.transport(settings) as transport:
        try:
            ticket = config.connector.fetch_ticket(transport, claimed.ticket_id)
        except (HelpdeskError, ConnectorError, ValueError) as exc:
            return _step_failed(db, settings, claimed, "received", transport.records, f"reading the ticket failed: {exc}")
        if claimed.provisional_trigger and not _name_trigger(db, claimed, ticket, transport.records):
            return "duplicate"
        image, refusals = _first_image(transport, ticket)
    with db.session() as session:
        _write_records(session, claimed, transport.records)
        for reason in refusals:
            _event(session, config.id, config.tenant_id, claimed.row_id, claimed.ticket_id, "attachment", error=reason)
    return _submit(db, blobs, settings, claimed, ticket, image)


def _name_trigger(db: Database, claimed: Claimed, ticket: Ticket, records: list[CallRecord]) -> bool:
    """The webhook named no comment: the ticket's latest public one names it. False (and the
    row marked duplicate) when that comment was already handled."""
    trigger = ticket.latest_comment_id or "description"
    with db.session() as session:
        repo = ConnectorRepository(session)
        if repo.resolve_trigger(claimed.row_id, trigger):
            return True
        _write_records(session, claimed, records)
        records.clear()
        repo.move(claimed.row_id, ("fetching",), "duplicate")
        _event(session, claimed.config.id, claimed.config.tenant_id, claimed.row_id, claimed.ticket_id, "duplicate",
               detail=f"comment {trigger} was already handled: no second job")
    return False


def _first_image(transport, ticket: Ticket) -> tuple[tuple[bytes, str | None] | None, list[str]]:
    """The first image attachment that may be fetched, and why each one before it was refused."""
    refusals = []
    for attachment in ticket.attachments:
        if not attachment.is_image:
            continue
        try:
            download = transport.download(attachment.url, ticket_id=ticket.id)
        except InputError as exc:
            refusals.append(f"{attachment.file_name or 'attachment'}: {exc.reason}")
            continue
        return (download.data, download.media_type or attachment.content_type), refusals
    return None, refusals


def _submit(db: Database, blobs: BlobStore, settings: Settings, claimed: Claimed, ticket: Ticket,
            image: tuple[bytes, str | None] | None) -> str:
    config = claimed.config
    plugin = get_plugin(config.plugin)
    texts = _job_texts(plugin, ticket, settings.max_text_chars)
    principal = _principal(config)
    key = f"{JOB_KEY_PREFIX}{claimed.row_id}"
    attempts = [image, None] if image is not None else [None]
    for photo in attempts:
        inputs = SubmittedInputs(image_bytes=photo[0] if photo else None, image_media_type=photo[1] if photo else None,
                                 texts=dict(texts))
        try:
            with db.session() as session:
                submitted = accept_job(session, blobs, settings, principal, JobSubmission(plugin, inputs, idempotency_key=key))
            break
        except InputError as exc:
            if photo is not None and exc.field.startswith("image"):
                with db.session() as session:  # the photo cannot be read: the text alone decides
                    _event(session, config.id, config.tenant_id, claimed.row_id, claimed.ticket_id, "attachment",
                           error=f"the photo was not used: {exc.reason}")
                continue
            return _no_job(db, claimed, f"{exc.field}: {exc.reason}")
        except ServiceError as exc:  # the tenant has no active model for the plugin, say
            return _no_job(db, claimed, exc.detail)
    job_id = submitted.job.id
    with db.session() as session:
        ConnectorRepository(session).move(claimed.row_id, ("fetching",), "submitted", job_id=job_id, attempts=0)
        _event(session, config.id, config.tenant_id, claimed.row_id, claimed.ticket_id, "job",
               detail=f"job {job_id} ({'with' if submitted.job.inputs.get('image') else 'without'} a photo)")
        job = session.get(Job, job_id)
        if job is not None and job.status in FINISHED_STATUSES:  # finished before this link was made
            row_id = claimed.row_id
            after_commit(session, lambda: publish_connector_step(row_id, WRITE_BACK))
    return "submitted"


def _no_job(db: Database, claimed: Claimed, reason: str) -> str:
    with db.session() as session:
        ConnectorRepository(session).move(claimed.row_id, ("fetching",), "failed", error=reason)
        _event(session, claimed.config.id, claimed.config.tenant_id, claimed.row_id, claimed.ticket_id, "failed",
               error=f"no job: {reason}")
    log.warning("connector ticket %s (%s %s): no job: %s", claimed.row_id, claimed.config.kind, claimed.ticket_id, reason)
    return "failed"


def _job_texts(plugin: Plugin, ticket: Ticket, max_chars: int) -> dict[str, str]:
    """The ticket's text in the plugin's text inputs: the body in `text` (or the first text
    input), the subject in `subject` when the plugin reads one; cut to the limits."""
    fields = {text.name: min(text.max_chars, max_chars) for text in plugin.input_schema().texts}
    texts: dict[str, str] = {}
    body_field = "text" if "text" in fields else next(iter(fields), None)
    body = ticket.job_text()
    if "subject" in fields and ticket.subject:
        texts["subject"] = ticket.subject[: fields["subject"]]
    elif ticket.subject:
        body = f"{ticket.subject}\n\n{body or ''}".strip()
    if body_field and body:
        texts[body_field] = body[: fields[body_field]]
    return texts


def _principal(config: connectors.ConnectorConfig) -> Principal:
    # The connector acts for its tenant with no API key (the helpdesk's webhook authenticated it).
    return Principal(tenant_id=config.tenant_id, tenant_name=config.tenant_name, key_id=None, is_admin=False)  # type: ignore[arg-type]


# -- 3. write back -----------------------------------------------------------------------------------
def on_job_finished(session: Session, job: Job) -> None:
    """Called as a job finishes: a ticket's job schedules that ticket's write-back."""
    key = job.idempotency_key or ""
    if not key.startswith(JOB_KEY_PREFIX):
        return
    try:
        row_id = uuid.UUID(key.removeprefix(JOB_KEY_PREFIX))
    except ValueError:
        return
    after_commit(session, lambda: publish_connector_step(row_id, WRITE_BACK))


def write_back(db: Database, settings: Settings, row_id: uuid.UUID) -> str | None:
    """Step 3; the row's new status, or None when it was not ours to take."""
    claimed = _claim(db, settings, row_id, ("submitted",), "writing")
    if claimed is None:
        return None
    config = claimed.config
    with db.session() as session:
        change = _change_for(session, claimed)
    if change is None:
        return _finish(db, claimed, "skipped", "the job was canceled: nothing written")
    if not config.write_back:
        return _finish(db, claimed, "skipped", "write-back is off for this connector")
    with config.transport(settings) as transport:
        try:
            # Read again: tags and the safe-update stamp as they are now, not at intake.
            ticket = config.connector.fetch_ticket(transport, claimed.ticket_id)
            config.connector.write_back(transport, ticket, change)
        except (HelpdeskError, ConnectorError, ValueError) as exc:
            return _step_failed(db, settings, claimed, "submitted", transport.records, f"writing back failed: {exc}")
    with db.session() as session:
        _write_records(session, claimed, transport.records)
    return _finish(db, claimed, "written", f"tags {', '.join(change.tags) or 'none'}; fields {', '.join(change.fields) or 'none'}; "
                                           "private note added")


def _change_for(session: Session, claimed: Claimed) -> notes.WriteBack | None:
    job = _job_of(session, claimed)
    if job is None or job.status == "canceled":
        return None
    if job.status == "succeeded" and job.result is not None:
        return notes.render(job.result.decision, claimed.config.mapping, model_version=job.result.model_version,
                            job_id=str(job.id))
    reason = (job.error or {}).get("reason") or "the job failed"
    return notes.render_failure(reason, claimed.config.mapping, job_id=str(job.id))


def _job_of(session: Session, claimed: Claimed) -> Job | None:
    if claimed.job_id is not None:
        return session.get(Job, claimed.job_id)
    return JobRepository(session).by_idempotency_key(claimed.config.tenant_id, f"{JOB_KEY_PREFIX}{claimed.row_id}")


def _finish(db: Database, claimed: Claimed, status: str, detail: str) -> str:
    with db.session() as session:
        ConnectorRepository(session).move(claimed.row_id, ("writing",), status, written_at=utcnow() if status == "written" else None)
        _event(session, claimed.config.id, claimed.config.tenant_id, claimed.row_id, claimed.ticket_id,
               "write_back" if status == "written" else "skipped", detail=detail)
    return status


# -- shared by the steps ---------------------------------------------------------------------------------
def _claim(db: Database, settings: Settings, row_id: uuid.UUID, from_statuses: tuple[str, ...], to_status: str) -> Claimed | None:
    with db.session() as session:
        repo = ConnectorRepository(session)
        row = repo.ticket(row_id)
        if row is None or not repo.move(row_id, from_statuses, to_status, attempts=row.attempts + 1):
            return None
        connector = repo.get(row.connector_id)
        config = connectors.config_of(session, connector, secret_box(settings))
        return Claimed(row.id, row.ticket_id, row.trigger_id.startswith("?"), row.job_id, config)


def _step_failed(db: Database, settings: Settings, claimed: Claimed, back_to: str, records: list[CallRecord], reason: str) -> str:
    """Back to the step's start for the sweep to retry, or failed once the attempts are used."""
    with db.session() as session:
        repo = ConnectorRepository(session)
        _write_records(session, claimed, records)
        row = repo.ticket(claimed.row_id)
        status = "failed" if row.attempts >= settings.connector_max_attempts else back_to
        repo.move(claimed.row_id, ("fetching", "writing"), status, error=reason)
        _event(session, claimed.config.id, claimed.config.tenant_id, claimed.row_id, claimed.ticket_id, "failed",
               error=reason, detail=f"attempt {row.attempts} of {settings.connector_max_attempts}"
                                    + ("; the sweep tries again" if status != "failed" else ""))
    log.warning("connector ticket %s (%s %s): %s", claimed.row_id, claimed.config.kind, claimed.ticket_id, reason)
    return status


def _write_records(session: Session, claimed: Claimed, records: list[CallRecord]) -> None:
    repo = ConnectorRepository(session)
    for record in records:
        repo.add_event(ConnectorEvent(
            connector_id=claimed.config.id, tenant_id=claimed.config.tenant_id, ticket_row_id=claimed.row_id,
            ticket_id=record.ticket_id or claimed.ticket_id, kind=record.kind, method=record.method, url=record.url,
            status_code=record.status_code, attempt=record.attempt, duration_ms=round(record.duration_ms, 2), error=record.error,
            created_at=record.at))
    records.clear()


def _event(session: Session, connector_id: uuid.UUID, tenant_id: uuid.UUID, row_id: uuid.UUID | None, ticket_id: str | None,
           kind: str, *, error: str | None = None, detail: str | None = None) -> None:
    ConnectorRepository(session).add_event(ConnectorEvent(connector_id=connector_id, tenant_id=tenant_id, ticket_row_id=row_id,
                                                          ticket_id=ticket_id, kind=kind, error=error, detail=detail))


# -- the sweep ---------------------------------------------------------------------------------------------
def sweep(session: Session, settings: Settings) -> dict[str, int]:
    """Take up tickets whose step was lost or failed: rows still received (their message
    was lost) or back at a step's start after a failure, steps whose worker vanished, and
    submitted rows whose job finished without their write-back being scheduled."""
    repo = ConnectorRepository(session)
    before = utcnow() - timedelta(seconds=settings.connector_stale_after_seconds)
    counts = {"connector_fetch": 0, "connector_write_back": 0}
    for row in repo.stuck(("fetching", "writing"), before):
        back = "received" if row.status == "fetching" else "submitted"
        repo.move(row.id, (row.status,), back if row.attempts < settings.connector_max_attempts else "failed",
                  error="the worker stopped during the step")
    for row in repo.stuck(("received",), before):
        counts["connector_fetch"] += 1
        after_commit(session, lambda row_id=row.id: publish_connector_step(row_id, FETCH))
    for row in repo.stuck(("submitted",), before):
        job = session.get(Job, row.job_id) if row.job_id else None
        if job is not None and job.status in FINISHED_STATUSES:
            counts["connector_write_back"] += 1
            after_commit(session, lambda row_id=row.id: publish_connector_step(row_id, WRITE_BACK))
    return counts


def run_step(db: Database, blobs: BlobStore, settings: Settings, row_id: str | uuid.UUID, step: str) -> str | None:
    """What a worker task calls: one step of one ticket."""
    row = uuid.UUID(str(row_id))
    if step == FETCH:
        return fetch_and_submit(db, blobs, settings, row)
    if step == WRITE_BACK:
        return write_back(db, settings, row)
    raise ValueError(f"unknown connector step {step!r}")


