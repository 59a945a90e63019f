"""Read a JSONL or CSV manifest into rows that remember their line number.

Line numbers are 1-based lines of the file as a text editor shows them; in a CSV the
header is line 1, and a row whose quoted cell spans several lines is reported at the
line where it starts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinlens.contract.errors import DatasetError, RowError

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")


class ManifestError(DatasetError):
    """The manifest as a whole cannot be used (missing, unsupported, no such column...).

    A DatasetError, so callers catching bad data catch this too, but its message names
    the file-level problems rather than pretending they are bad rows.
    """

    def __init__(self, path: Path | str, reasons: list[str], rows: list[RowError] | None = None):
        self.path = str(path)
        self.rows = rows or [RowError(0, "file", reason) for reason in reasons]
        self.reasons = reasons
        listing = "".join(f"\n  {row}" for row in (rows or [])[:200])
        Exception.__init__(self, f"{path}: " + "; ".join(reasons) + listing)


@dataclass
class Row:
    line: int
    values: dict[str, Any]


@dataclass
class Table:
    path: Path
    rows: list[Row]
    # Columns named by the header (CSV) or seen in at least one row (JSONL).
    columns: list[str]
    # CSV cells are all text; JSONL values carry JSON types. Label parsing depends on it.
    typed: bool
    # Rows that could not even be parsed (malformed JSON, wrong field count).
    errors: list[RowError]


def resolve_manifest(path: Path) -> Path:
    """A manifest file, or a folder holding manifest.jsonl or manifest.csv."""
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return path / name
        raise ManifestError(path, [f"folder holds none of {', '.join(MANIFEST_NAMES)}"])
    if not path.is_file():
        raise ManifestError(path, ["no such file"])
    return path


def read_table(path: Path) -> Table:
    path = resolve_manifest(Path(path))
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, text)
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, text, delimiter="\t" if suffix == ".tsv" else ",")
    raise ManifestError(path, [f"unsupported format {suffix!r}; expected .jsonl, .ndjson, .csv or .tsv"])


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(str(path), [RowError(line, "file", "not valid UTF-8 text")]) from None


def _read_jsonl(path: Path, text: str) -> Table:
    rows: list[Row] = []
    errors: list[RowError] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (often a trailing one) carry nothing
        try:
            values = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(RowError(number, "json", f"malformed JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(values, dict):
            errors.append(RowError(number, "json", f"expected a JSON object, got {type(values).__name__}"))
            continue
        columns.update(dict.fromkeys(values))
        rows.append(Row(number, values))
    return Table(path, rows, list(columns), typed=True, errors=errors)


def _read_csv(path: Path, text: str, delimiter: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(path, ["the file is empty"]) from None
    except csv.Error as exc:
        raise DatasetError(str(path), [RowError(1, "header", f"unreadable CSV header: {exc}")]) from None
    header = [name.strip() for name in header]
    rows: list[Row] = []
    errors: list[RowError] = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The csv module cannot resume after a syntax error; report where it stopped.
            errors.append(RowError(start, "csv", f"unreadable CSV ({exc}); rows after this line were not read"))
            break
        if not cells or all(not cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            errors.append(RowError(start, "csv", f"{len(cells)} fields, but the header has {len(header)}"))
            continue
        rows.append(Row(start, dict(zip(header, cells))))
    return Table(path, rows, header, typed=False, errors=errors)
