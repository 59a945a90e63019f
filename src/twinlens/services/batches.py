"""Bulk scoring batches: a JSONL/CSV file of inputs scored by workers, the use cases behind
`POST /v1/plugins/{name}/batches` and `/v1/batches/...` (docs/bulk.md).

Upload (API side): the file is parsed and every row checked the way a job's inputs are
(texts, metadata, the image reference), sanitized by the plugin, and stored one line per
row; a bad row is stored as failed with its line number and does not stop the others.
The uploaded file itself is not kept. The batch's model version is chosen at upload.

Scoring (worker side): a worker claims the batch, scores its queued lines in micro-batches
(images fetched through the SSRF guard or read from an admin's data roots, on threads one
micro-batch ahead of the model), writes each micro-batch's answers in one transaction and
hands the batch back to the queue after `bulk_slice_seconds`, so the next task goes on
where it stopped. A line is written only while still queued, so a batch picked up again
after its worker died never scores a line twice.

Retention purges a finished batch's lines (inputs and answers) with the jobs' inputs; a
subject's erasure deletes the lines that named it. Torch-free: the API imports this.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from twinlens.contract.errors import DatasetError, InputError, TwinLensError
from twinlens.contract.plugin import Plugin, RawInput
from twinlens.contract.table import CSV_SUFFIXES, JSONL_SUFFIXES, Row, read_table
from twinlens.db.base import utcnow
from twinlens.db.batch_tables import Batch
from twinlens.db.repositories import AuditRepository
from twinlens.db.repositories.batches import BatchRepository
from twinlens.db.session import Database, after_commit
from twinlens.queue import publish_batch
from twinlens.services import erasure
from twinlens.services.admin_paths import confined_path
from twinlens.services.errors import Conflict, NotFound, ServiceError
from twinlens.services.fetch import fetch_image
from twinlens.services.inputs import check_image, check_texts_and_metadata
from twinlens.services.keys import Principal
from twinlens.services.models import model_for_new_job
from twinlens.services.paging import PageRequest, next_cursor
from twinlens.services.views import BatchList, BatchView, batch_view
from twinlens.settings import Settings

IMAGE_COLUMN = "image"
ID_COLUMN = "id"
METADATA_COLUMN = "metadata"
MEDIA_TYPES = {
    "application/x-ndjson": ".jsonl", "application/jsonl": ".jsonl", "application/jsonlines": ".jsonl",
    "application/json-lines": ".jsonl", "text/csv": ".csv", "text/tab-separated-values": ".tsv",
}
ANSWER_PAGE = 500
ERRORS_SHOWN = 20


class Gone(ServiceError):
    status = 410
    title = "Gone"


@dataclass(frozen=True)
class BatchUpload:
    filename: str
    content_type: str | None
    data: bytes


# -- upload (API side) ----------------------------------------------------------------------


def submit_batch(session: Session, settings: Settings, principal: Principal, plugin: Plugin, upload: BatchUpload) -> BatchView:
    """Check and store the file's rows as a queued batch; published once the caller commits."""
    suffix = _format_of(upload)
    if len(upload.data) > settings.bulk_max_upload_bytes:
        raise InputError("file", f"{len(upload.data)} bytes exceeds the limit of {settings.bulk_max_upload_bytes}", status=413)
    rows, unreadable = _parse(upload.data, suffix)
    if len(rows) + len(unreadable) > settings.bulk_max_rows:
        raise InputError("file", f"{len(rows) + len(unreadable)} rows exceeds the limit of {settings.bulk_max_rows}", status=413)
    if not rows and not unreadable:
        raise InputError("file", "the file holds no rows")
    model = model_for_new_job(session, principal.tenant_id, plugin.name, zero_shot=settings.zero_shot)
    lines = [_line(plugin, principal, settings, row) for row in rows]
    lines += [{"line": error.line, "row_ref": None, "status": "failed", "inputs": None,
               "error": {"field": error.field, "reason": error.reason}} for error in unreadable]
    lines.sort(key=lambda line: line["line"])
    failed = sum(1 for line in lines if line["status"] == "failed")
    now = utcnow()
    nothing_to_score = failed == len(lines)
    batch = BatchRepository(session).add(Batch(
        tenant_id=principal.tenant_id, api_key_id=principal.key_id, plugin=plugin.name, model_version_id=model.id, model_version=model,
        status="succeeded" if nothing_to_score else "queued", filename=_display_name(upload.filename),
        rows_total=len(lines), rows_failed=failed, finished_at=now if nothing_to_score else None,
    ), lines)
    AuditRepository(session).record("batch.submit", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"batch:{batch.id}", details={"plugin": plugin.name, "rows": len(lines), "bad_rows": failed})
    if not nothing_to_score:
        batch_id, name = batch.id, plugin.name
        after_commit(session, lambda: publish_batch(batch_id, name))
    return _view(session, batch)


def _format_of(upload: BatchUpload) -> str:
    suffix = PurePath(upload.filename or "").suffix.lower()
    if suffix in JSONL_SUFFIXES + CSV_SUFFIXES:
        return suffix
    declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
    if declared in MEDIA_TYPES:
        return MEDIA_TYPES[declared]
    raise InputError("file", "send a .jsonl, .ndjson, .csv or .tsv file (by its name or its content type)", status=415)


def _parse(data: bytes, suffix: str) -> tuple[list[Row], list]:
    """The file's rows and the lines that did not parse, via the shared manifest reader."""
    with tempfile.TemporaryDirectory(prefix="twinlens-batch-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            table = read_table(path)
        except DatasetError as exc:
            rows = getattr(exc, "rows", None) or []
            reason = "; ".join(f"line {row.line}: {row.reason}" if row.line else row.reason for row in rows) or str(exc)
            raise InputError("file", reason.replace(str(path), "the file")) from None
    return table.rows, table.errors


def _display_name(filename: str) -> str:
    return _no_nul(PurePath(filename or "").name)[:255]


def _no_nul(text: str) -> str:
    # PostgreSQL text columns cannot hold NUL; a name or id is still told apart without it.
    return text.replace("\x00", "")


def _line(plugin: Plugin, principal: Principal, settings: Settings, row: Row) -> dict[str, Any]:
    """One row as stored: its checked, sanitized inputs, or why it cannot be scored."""
    ref = row.values.get(ID_COLUMN)
    line: dict[str, Any] = {"line": row.line, "row_ref": None if ref in (None, "") else _no_nul(str(ref))[:1000]}
    try:
        inputs, subject = _checked_inputs(plugin, principal, settings, row.values)
    except TwinLensError as exc:
        return {**line, "status": "failed", "inputs": None,
                "error": {"field": getattr(exc, "field", None), "reason": getattr(exc, "reason", str(exc))}}
    return {**line, "status": "queued", "inputs": inputs, "subject_digest": subject}


def _checked_inputs(plugin: Plugin, principal: Principal, settings: Settings, values: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    schema = plugin.input_schema()
    texts = {name: _text(values[name]) for name in schema.text_names if name in values}
    metadata = _metadata(schema, values)
    texts = check_texts_and_metadata(plugin, texts, metadata, settings)
    image = _image_reference(plugin, principal, settings, values.get(IMAGE_COLUMN))
    if image is None and schema.image is not None and schema.image.required:
        raise InputError("image", "this plugin needs an image")
    if image is None and not any(texts.values()):
        raise InputError("inputs", "neither an image nor any text was given")
    subject = erasure.subject_digest_of(principal.tenant_id, metadata)
    # What must never be stored is removed before storing (the image, fetched later, is
    # sanitized by the worker before use).
    clean = plugin.sanitize(RawInput(texts=texts, metadata=metadata))
    return {"texts": clean.texts, "metadata": clean.metadata, "image": image}, subject


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        raise InputError("inputs", "a text column holds text, not a JSON object or list")
    return value if isinstance(value, str) else str(value)


def _metadata(schema, values: dict[str, Any]) -> dict[str, Any]:
    """The `metadata` column (a JSON object; in a CSV its JSON text) plus any column named
    like one of the plugin's metadata fields."""
    given = values.get(METADATA_COLUMN)
    if isinstance(given, str) and given.strip():
        try:
            given = json.loads(given)
        except json.JSONDecodeError as exc:
            raise InputError("metadata", f"not valid JSON: {exc.msg}") from None
    if given in (None, ""):
        given = {}
    if not isinstance(given, dict):
        raise InputError("metadata", "must be a JSON object")
    named = {spec.name: values[spec.name] for spec in schema.metadata if values.get(spec.name) not in (None, "")}
    return {**given, **named}


def _image_reference(plugin: Plugin, principal: Principal, settings: Settings, cell: Any) -> dict[str, str] | None:
    """{"url": ...} or {"path": ...} from the image column: a string (http(s) URL or path)
    or a JSON object with one of those keys."""
    if cell in (None, ""):
        return None
    if plugin.input_schema().image is None:
        raise InputError(IMAGE_COLUMN, f"plugin {plugin.name!r} takes no image")
    if isinstance(cell, dict) and len(cell) == 1 and set(cell) <= {"url", "path"} and isinstance(next(iter(cell.values())), str):
        kind, value = next(iter(cell.items()))
    elif isinstance(cell, str):
        kind, value = ("url" if "://" in cell else "path"), cell
    else:
        raise InputError(IMAGE_COLUMN, 'give an http(s) URL, a path, or {"url": ...} / {"path": ...}')
    if kind == "url":
        return {"url": _checked_url(value)}
    return {"path": str(_checked_path(principal, settings, value))}


def _checked_url(url: str) -> str:
    # The form only: the worker's fetch checks where it resolves (and each redirect), so a
    # name that resolves elsewhere by then is still refused.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(IMAGE_COLUMN, "an image URL must be http(s) with a host")
    return url


def _checked_path(principal: Principal, settings: Settings, raw: str) -> Path:
    if not principal.is_admin:
        raise InputError(IMAGE_COLUMN, "image paths on the server are for admin keys; give an http(s) URL")
    path = confined_path(IMAGE_COLUMN, raw, settings.resolved_data_roots, setting="TWINLENS_DATA_ROOTS")
    if not path.is_file():
        raise InputError(IMAGE_COLUMN, "no such file in the data roots")
    return path


# -- reading, canceling, deleting (API side) ------------------------------------------------


def get_batch(session: Session, principal: Principal, batch_id: uuid.UUID) -> Batch:
    batch = BatchRepository(session).get_for_tenant(batch_id, principal.tenant_id)
    if batch is None:  # another tenant's batch is indistinguishable from no batch
        raise NotFound(f"no batch {batch_id}")
    return batch


def batch_status(session: Session, principal: Principal, batch_id: uuid.UUID) -> BatchView:
    """The batch's progress, with its first bad rows."""
    return _view(session, get_batch(session, principal, batch_id))


def _view(session: Session, batch: Batch) -> BatchView:
    return batch_view(batch, BatchRepository(session).failed_rows(batch.id, ERRORS_SHOWN))


def list_batches(session: Session, principal: Principal, page: PageRequest, *, plugin: str | None = None,
                 status: str | None = None) -> BatchList:
    """One page of the tenant's batches, newest first (without their bad rows)."""
    result = BatchRepository(session).page(principal.tenant_id, limit=page.limit, plugin=plugin, status=status, after=page.after)
    return BatchList(data=[batch_view(batch) for batch in result.rows], next_cursor=next_cursor(result))


def cancel_batch(session: Session, principal: Principal, batch_id: uuid.UUID) -> BatchView:
    """Stop a queued or running batch: the lines already scored keep their answers, the
    rest are left unscored (a worker stops at its next micro-batch)."""
    batch = get_batch(session, principal, batch_id)
    if not BatchRepository(session).cancel(batch.id, utcnow()):
        raise Conflict(f"batch {batch_id} is {batch.status}; only queued or running batches can be canceled", batch_status=batch.status)
    session.refresh(batch)
    return _view(session, batch)


def delete_batch(session: Session, principal: Principal, batch_id: uuid.UUID) -> None:
    """Delete the batch with every line (inputs and answers), now."""
    batch = get_batch(session, principal, batch_id)
    BatchRepository(session).delete(batch)
    AuditRepository(session).record("batch.delete", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
                                    target=f"batch:{batch_id}")


def result_lines(session: Session, db: Database, principal: Principal, batch_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """The answered lines in file order, one dict per line of the results file. The batch
    is looked up in the request's session (404, 410) before this returns; the lines are
    read as the iterator is consumed (after the request's session has ended: on SQLite a
    second open transaction would wait for the first), a page at a time, each page in its
    own short session, so a long download holds no transaction open."""
    batch = get_batch(session, principal, batch_id)
    if batch.purged_at is not None:
        raise Gone(f"the rows of batch {batch_id} were purged at {batch.purged_at.isoformat()} (retention or erasure)")
    return _answers(db, batch_id)


def _answers(db: Database, batch_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        with db.session() as session:
            page = [answer_line(row) for row in BatchRepository(session).answered_rows(batch_id, after, ANSWER_PAGE)]
        if not page:
            return
        yield from page
        after = page[-1]["line"]


def answer_line(row) -> dict[str, Any]:
    line = {"line": row.line, "id": row.row_ref, "status": row.status}
    if row.status == "succeeded":
        return {**line, **(row.output or {})}
    return {**line, "error": row.error}


# -- scoring (worker side) ------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedBatch:
    id: uuid.UUID
    plugin: str
    model_version_id: uuid.UUID
    model_version: str
    bundle_path: str
    token: str  # this claim's: only it may write the batch's state


@dataclass(frozen=True)
class QueuedLine:
    line: int
    inputs: dict[str, Any]


def claim_batch(session: Session, batch_id: uuid.UUID, worker: str) -> ClaimedBatch | None:
    token = f"{worker}#{uuid.uuid4().hex[:12]}"
    repo = BatchRepository(session)
    if not repo.claim(batch_id, utcnow(), token):
        return None
    batch = repo.get(batch_id)
    return ClaimedBatch(batch.id, batch.plugin, batch.model_version_id, batch.model_version.version,
                        batch.model_version.bundle_path, token)


def queued_lines(db: Database, batch_id: uuid.UUID, page: int = ANSWER_PAGE) -> Iterator[QueuedLine]:
    """The batch's queued lines in file order, read a page at a time as they are consumed."""
    after = 0
    while True:
        with db.session() as session:
            rows = BatchRepository(session).queued_rows(batch_id, after, page)
        if not rows:
            return
        for line, _, inputs in rows:
            yield QueuedLine(line, inputs)
        after = rows[-1][0]


def load_line_input(plugin: Plugin, settings: Settings, inputs: dict[str, Any]) -> RawInput:
    """A stored line's inputs with its image fetched (URL: through the SSRF guard) or read
    (path: confined to the data roots again, as it may have changed since the upload),
    checked like an uploaded image, then sanitized by the plugin. Raises InputError."""
    image = inputs.get("image") or {}
    data = media_type = None
    if "url" in image:
        fetched = fetch_image(image["url"], max_bytes=settings.max_upload_bytes, timeout=settings.url_fetch_timeout,
                              max_redirects=settings.url_fetch_max_redirects, allow_private=settings.allow_private_urls)
        data, media_type = fetched.data, fetched.media_type
    elif "path" in image:
        data = _read_confined(image["path"], settings)
    if data is not None:
        media_type = check_image(plugin, data, media_type, settings)
    raw = RawInput(image_bytes=data, media_type=media_type, texts=inputs.get("texts") or {}, metadata=inputs.get("metadata") or {})
    return plugin.sanitize(raw)


def _read_confined(raw: str, settings: Settings) -> bytes:
    path = confined_path(IMAGE_COLUMN, raw, settings.resolved_data_roots, setting="TWINLENS_DATA_ROOTS")
    try:
        with open(path, "rb") as handle:
            data = handle.read(settings.max_upload_bytes + 1)
    except OSError as exc:
        raise InputError(IMAGE_COLUMN, f"cannot read the image: {exc.strerror or exc.__class__.__name__}") from None
    if len(data) > settings.max_upload_bytes:
        raise InputError(IMAGE_COLUMN, f"the image is over the limit of {settings.max_upload_bytes} bytes", status=413)
    return data


def record_answers(session: Session, claimed: ClaimedBatch, answers: list[dict[str, Any]]) -> bool:
    """Write one micro-batch's answers ({line, status, output | error}) and the counts;
    False when the batch is no longer this claim's (canceled, deleted, taken over): the
    worker then stops."""
    repo = BatchRepository(session)
    if not repo.held_by(claimed.id, claimed.token):
        return False
    repo.write_answers(claimed.id, answers)
    repo.refresh_counts(claimed.id, utcnow())
    return True


def end_slice(session: Session, claimed: ClaimedBatch) -> bool:
    """Finish the batch if no line is left, else hand it back to the queue; True when it
    was handed back (and so must be published again, once committed)."""
    repo = BatchRepository(session)
    if not repo.queued_left(claimed.id):
        repo.refresh_counts(claimed.id, utcnow())
        repo.finish(claimed.id, claimed.token, "succeeded", utcnow())
        return False
    released = repo.release(claimed.id, claimed.token)
    if released:
        after_commit(session, lambda: publish_batch(claimed.id, claimed.plugin))
    return released


def fail_batch(session: Session, claimed: ClaimedBatch, reason: str) -> None:
    BatchRepository(session).finish(claimed.id, claimed.token, "failed", utcnow(), {"field": None, "reason": reason})


# -- recovery, retention, erasure (worker and operator side) --------------------------------


def recover_batches(session: Session, stale_after: float, queued_older_than: float) -> int:
    """Queue again the running batches whose worker stopped beating (its heartbeat is
    older than `stale_after`), and publish them and the queued batches older than
    `queued_older_than` whose messages may have been lost (a message finding its batch
    taken does nothing)."""
    repo = BatchRepository(session)
    now = utcnow()
    stale_before = now - timedelta(seconds=stale_after)
    requeued = [(batch_id, plugin) for batch_id, plugin in repo.stale_running(stale_before)
                if repo.requeue_stale(batch_id, stale_before)]
    waiting = repo.queued_before(now - timedelta(seconds=queued_older_than))
    for batch_id, plugin in {*requeued, *waiting}:
        after_commit(session, lambda batch_id=batch_id, plugin=plugin: publish_batch(batch_id, plugin))
    return len(requeued)


def purge_expired_batches(session: Session, retention_days: float | None) -> int:
    """Retention: forget the lines (inputs and answers) of batches finished more than
    `retention_days` ago, with one audit event per tenant."""
    if retention_days is None:
        return 0
    now = utcnow()
    repo = BatchRepository(session)
    batches = repo.finished_unpurged_before(now - timedelta(days=retention_days))
    counts: dict[uuid.UUID, int] = {}
    for batch in batches:
        repo.purge_rows(batch.id, now)
        counts[batch.tenant_id] = counts.get(batch.tenant_id, 0) + 1
    for tenant_id, count in counts.items():
        AuditRepository(session).record("retention.purge_batches", tenant_id=tenant_id,
                                        details={"batches": count, "retention_days": retention_days})
    return len(batches)
