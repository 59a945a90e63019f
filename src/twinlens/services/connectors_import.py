"""Back-fill: a connector's latest closed tickets as a support_ticket training export.

The cold-start path: train on your own history. Each closed (or solved) ticket becomes one
row of `tickets.jsonl` in the support_ticket export format (plugins/support_ticket/README.md):
ticket_id, created_at, subject, description, attachments (the first image attachment that
may be fetched, saved under attachments/), and its resolution fields read through the
connector's field mapping as labels (fault, severity). A value that is not one of the
plugin's labels is left out (that head is unlabelled for the row) and counted.
"""

from __future__ import annotations

import json
import mimetypes
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from twinlens.connectors.contract import HistoricTicket, Transport
from twinlens.contract.errors import InputError
from twinlens.contract.registry import get_plugin
from twinlens.db.connector_tables import ConnectorEvent
from twinlens.db.repositories.connectors import ConnectorRepository
from twinlens.db.session import Database
from twinlens.services import connectors
from twinlens.services.webhook_secrets import secret_box
from twinlens.settings import Settings

EXPORT_NAME = "tickets.jsonl"
IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass
class ImportReport:
    path: Path
    tickets: int = 0
    with_photo: int = 0
    labelled: dict[str, int] = field(default_factory=dict)
    unknown_labels: int = 0
    refused_attachments: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "tickets": self.tickets, "with_photo": self.with_photo, "labelled": self.labelled,
                "unknown_labels": self.unknown_labels, "refused_attachments": self.refused_attachments}


def backfill(db: Database, settings: Settings, tenant: str, reference: str, out_dir: Path, last: int) -> ImportReport:
    if last < 1:
        raise InputError("last", "give how many closed tickets to import (1 or more)")
    with db.session() as session:
        principal = connectors.operator_for(session, tenant)
        row = connectors.find_connector(session, principal, reference)
        config = connectors.config_of(session, row, secret_box(settings))
    schema = get_plugin(config.plugin).label_schema()
    out_dir = Path(out_dir)
    (out_dir / "attachments").mkdir(parents=True, exist_ok=True)
    report = ImportReport(out_dir / EXPORT_NAME)
    with config.transport(settings) as transport:
        try:
            history = config.connector.closed_tickets(transport, last, config.mapping)
            lines = [_row(config.kind, item, transport, out_dir, schema, report) for item in history]
        finally:
            _log_calls(db, config, transport.records)
    _write_lines(report.path, lines)
    report.tickets = len(lines)
    return report


def _row(kind: str, item: HistoricTicket, transport: Transport, out_dir: Path, schema, report: ImportReport) -> dict:
    ticket = item.ticket
    row: dict = {"ticket_id": f"{kind}-{ticket.id}", "created_at": item.created_at, "subject": ticket.subject,
                 "description": ticket.job_text(), "attachments": []}
    photo = _photo(ticket, transport, out_dir, report)
    if photo:
        row["attachments"] = [photo]
        report.with_photo += 1
    tasks = {task.name: task for task in (schema.tasks if schema else ())}
    for key, value in item.labels.items():
        if key not in tasks:
            continue  # a mapped field that is no label of the plugin (team, action)
        if value is not None and value not in tasks[key].label_names:
            report.unknown_labels += 1
            value = None
        row[key] = value
        if value is not None:
            report.labelled[key] = report.labelled.get(key, 0) + 1
    return row


def _photo(ticket, transport: Transport, out_dir: Path, report: ImportReport) -> str | None:
    for number, attachment in enumerate(a for a in ticket.attachments if a.is_image):
        try:
            download = transport.download(attachment.url, ticket_id=ticket.id)
        except InputError as exc:
            report.refused_attachments.append(f"ticket {ticket.id}: {attachment.file_name}: {exc.reason}")
            continue
        kind = download.media_type or attachment.content_type or mimetypes.guess_type(attachment.file_name)[0] or ""
        suffix = IMAGE_SUFFIXES.get(kind) or Path(attachment.file_name).suffix.lower() or ".png"
        relative = f"attachments/{ticket.id}-{number}{suffix}"
        (out_dir / relative).write_bytes(download.data)
        return relative
    return None


def _write_lines(path: Path, lines: list[dict]) -> None:
    """Through a temporary file and a rename: a reader never sees half an export."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _log_calls(db: Database, config: connectors.ConnectorConfig, records) -> None:
    with db.session() as session:
        repo = ConnectorRepository(session)
        for record in records:
            repo.add_event(ConnectorEvent(connector_id=config.id, tenant_id=config.tenant_id, ticket_id=record.ticket_id,
                                          kind=record.kind, method=record.method, url=record.url, status_code=record.status_code,
                                          attempt=record.attempt, duration_ms=round(record.duration_ms, 2), error=record.error,
                                          detail="import", created_at=record.at))
