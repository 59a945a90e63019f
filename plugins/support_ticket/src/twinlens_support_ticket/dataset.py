"""Reading a helpdesk export (CSV or JSONL) into samples; the format is in the README.

Every bad row is collected with its line number and reported together (DatasetError), or
left out and listed when `skip_bad_rows` is set. OCR runs once per distinct image and is
cached beside the export (see `ocr_cache`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twinlens.contract.errors import DatasetError, InputError, RowError
from twinlens.contract.images import decode_image
from twinlens.contract.plugin import Dataset, DatasetOptions
from twinlens.contract.sample import Sample
from twinlens.contract.table import Row, read_table

from twinlens_support_ticket import ocr
from twinlens_support_ticket.labels import LABEL_SCHEMA
from twinlens_support_ticket.ocr_cache import OcrCache, content_key
from twinlens_support_ticket.product import parse_product
from twinlens_support_ticket.samples import MAX_PHOTOS, build_sample, join_ocr, ticket_text

EXPORT_NAMES = ("tickets.jsonl", "tickets.csv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
LABEL_COLUMNS = ("fault", "severity")


class BadRow(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def resolve_export(path: Path) -> Path:
    """The export file itself, or the tickets.jsonl / tickets.csv inside a folder."""
    if path.is_dir():
        for name in EXPORT_NAMES:
            if (path / name).is_file():
                return path / name
        raise DatasetError(str(path), [RowError(0, "path", f"folder holds none of {', '.join(EXPORT_NAMES)}")])
    if not path.is_file():
        raise DatasetError(str(path), [RowError(0, "path", "no such file")])
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise DatasetError(str(path), [RowError(0, "path", "expected a .jsonl or .csv helpdesk export")])
    return path


def read_export(path: Path, options: DatasetOptions | None = None, *, progress: bool = True, ocr_photos: bool = True) -> Dataset:
    """Read an export. `ocr_photos=False` leaves the `ocr` input empty (and runs no OCR):
    for models that do not use it, or quick experiments."""
    options = options or DatasetOptions()
    export = resolve_export(Path(path))
    cache = OcrCache.beside(export)
    samples: list[Sample] = []
    problems: list[RowError] = []
    seen: set[str] = set()
    rows = list(_rows(export, problems))
    for row in _progress(rows, progress):
        try:
            samples.append(_sample(row, export.parent, cache if ocr_photos else None, seen, options))
        except BadRow as bad:
            problems.append(RowError(row.line, bad.field, bad.reason))
    cache.save()
    problems.sort(key=lambda problem: problem.line)  # parse errors were found before row errors
    if problems and not options.skip_bad_rows:
        raise DatasetError(str(export), problems)
    return Dataset(samples=samples, label_schema=LABEL_SCHEMA, skipped=problems)


def _progress(rows: list[Row], enabled: bool):
    if not enabled or len(rows) < 50:
        return rows
    from tqdm.auto import tqdm

    return tqdm(rows, desc="reading tickets", file=sys.stderr, leave=False)


def _rows(export: Path, problems: list[RowError]) -> list[Row]:
    """The export's rows with their line numbers; rows that cannot be parsed go to `problems`."""
    table = read_table(export)
    if not table.typed and "ticket_id" not in table.columns:
        raise DatasetError(str(export), [RowError(1, "header", "the header must name a ticket_id column")])
    problems.extend(table.errors)
    return table.rows


def _split_attachments(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(";") if part.strip()]


def _sample(row: Row, root: Path, cache: OcrCache | None, seen: set[str], options: DatasetOptions) -> Sample:
    values = row.values
    ticket_id = _ticket_id(values, seen)
    text = ticket_text(_string(values, "subject"), _string(values, "description"))
    if options.text_required and text is None:
        raise BadRow("description", "empty, and text is required")
    images, ocr_text = _photos(values, root, cache)
    image = images[0] if images else None
    if image is None and text is None:
        raise BadRow("ticket", "neither a photo attachment nor a subject/description")
    try:
        product = parse_product(values)
    except InputError as exc:
        raise BadRow(exc.field.removeprefix("metadata."), exc.reason) from None
    meta = {"line": row.line, "ticket_id": ticket_id}
    if isinstance(values.get("evidence"), str) and values["evidence"]:
        meta["evidence"] = values["evidence"]
    return build_sample(image=image, text=text, ocr_text=ocr_text, product=product,
                        labels=_labels(values), sample_id=ticket_id, meta=meta, more_images=images[1:])


def _ticket_id(values: dict[str, Any], seen: set[str]) -> str:
    ticket_id = _string(values, "ticket_id")
    if not ticket_id:
        raise BadRow("ticket_id", "missing")
    if ticket_id in seen:
        raise BadRow("ticket_id", f"{ticket_id!r} appears more than once")
    seen.add(ticket_id)
    return ticket_id


def _string(values: dict[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise BadRow(name, f"expected text, got {type(value).__name__}")
    return str(value).strip() or None


def _labels(values: dict[str, Any]) -> dict[str, str | None]:
    labels: dict[str, str | None] = {}
    for task in LABEL_SCHEMA.tasks:
        value = _string(values, task.name)
        if value is not None and value not in task.label_names:
            raise BadRow(task.name, f"{value!r} is not one of {', '.join(task.label_names)}")
        labels[task.name] = value
    return labels


def _photos(values: dict[str, Any], root: Path, cache: OcrCache | None):
    """Every image attachment, decoded (EXIF applied), up to the plugin's MAX_PHOTOS (more
    is a bad row, as the API refuses them), and the text OCR read from each, joined."""
    attachments = values.get("attachments") or []
    if isinstance(attachments, str):
        attachments = _split_attachments(attachments)
    if not isinstance(attachments, list) or not all(isinstance(item, str) for item in attachments):
        raise BadRow("attachments", "expected a list of file paths")
    names = [item for item in attachments if Path(item).suffix.lower() in IMAGE_SUFFIXES]
    if len(names) > MAX_PHOTOS:
        raise BadRow("attachments", f"{len(names)} image attachments; a ticket takes at most {MAX_PHOTOS}")
    read = [_photo(name, root, cache) for name in names]
    texts = [text for _, text in read if text]
    return [image for image, _ in read], (join_ocr(texts) if cache is not None else None)


def _photo(name: str, root: Path, cache: OcrCache | None):
    """One image attachment, decoded, and the text OCR read from it (None without a cache)."""
    file = (root / name).resolve()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BadRow("attachments", f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        image = decode_image(data)
    except InputError as exc:
        raise BadRow("attachments", f"{name}: {exc.reason}") from None
    if cache is None:
        return image, None
    key = content_key(data)
    found, text = cache.get(key)
    if not found:
        text = ocr.read_text(image)
        cache.put(key, text)
    return image, text
