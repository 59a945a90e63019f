"""Turn a manifest table (JSONL or CSV) of image + text + label columns into a Dataset.

Manifest format (one row per example; image paths are relative to the manifest file):

* JSONL: ``{"id": "a1", "image": "images/a1.png", "text": "...", "label": "cat"}``;
  a multilabel column holds a JSON list (``["x", "y"]``), a regression column a number.
* CSV (header on line 1): the same columns; a multilabel cell is ``x|y`` or a JSON list
  string ``["x", "y"]``; ``[]`` means no label applies. A column of numbers is taken as
  regression: force ``multiclass`` (DatasetOptions.task_kinds / ``--task-kind``) when the
  numbers are class ids.

Part of the contract because any plugin with a table format may read it: the generic
plugin without a schema (tasks inferred from the columns), a plugin made by ``twinlens
plugin new`` with its own fixed schema.

Every problem is collected before anything is returned, so a user fixes a file in one
pass: each bad row is reported with its line number, and with `skip_bad_rows` the good
rows are kept and the bad ones listed in `Dataset.skipped`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinlens.contract.errors import DatasetError, InputError, RowError
from twinlens.contract.images import decode_image
from twinlens.contract.plugin import Dataset, DatasetOptions
from twinlens.contract.sample import LabelValue, Sample
from twinlens.contract import label_cells as label_rules
from twinlens.contract.schema import LabelSchema, Task, TaskKind
from twinlens.contract.table import ManifestError, Row, Table, read_table

if TYPE_CHECKING:
    from PIL import Image

# Decoded images are kept in memory for the whole data set, so big photos are shrunk to
# this longest side on reading: ample for encoders that look at 224-384 pixels.
DEFAULT_KEEP_IMAGE_SIDE = 512

TextCleaner = Callable[[str, "str | None"], "str | None"]


@dataclass
class _ParsedRow:
    line: int
    sample: Sample
    raw_labels: dict[str, Any] = field(default_factory=dict)


def read_manifest(
    path: Path,
    options: DatasetOptions | None = None,
    *,
    schema: LabelSchema | None = None,
    clean_text: TextCleaner | None = None,
    text_input: str = "text",
    keep_image_side: int = DEFAULT_KEEP_IMAGE_SIDE,
) -> Dataset:
    """Read a manifest. With `schema`, label columns are its task names and every label
    must be one it declares; without, one task per `options.label_cols`, kinds inferred.
    """
    options = options or DatasetOptions()
    table = read_table(Path(path))
    label_cols = schema.task_names if schema else _unique(options.label_cols)
    _check_columns(table, options, label_cols)
    errors = list(table.errors)
    reader = _RowReader(table, options, clean_text or _default_clean, text_input, keep_image_side)
    parsed = [reader.parse(row, errors) for row in table.rows]
    kinds = _read_labels(table, parsed, label_cols, options, schema, errors)
    return _finish(table, parsed, kinds, errors, options, schema)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def _default_clean(name: str, text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(text.split()) or None


def _check_columns(table: Table, options: DatasetOptions, label_cols: list[str]) -> None:
    """Columns the user named must exist; default image/text columns may be absent."""
    missing = [name for name in label_cols if name not in table.columns]
    for option in ("image_col", "text_col"):
        name = getattr(options, option)
        if option in options.model_fields_set and name and name not in table.columns:
            missing.append(name)
    problems = [f"no column {name!r}" for name in missing]
    if missing:
        problems.append(f"the columns are {table.columns}")
    if not label_cols:
        problems.append("no label column given")
    if problems:
        raise ManifestError(table.path, problems)


class _RowReader:
    """Reads the inputs (image, text, id) of one row, noting every problem."""

    def __init__(self, table: Table, options: DatasetOptions, clean: TextCleaner, text_input: str, keep_side: int):
        self.table = table
        self.options = options
        self.clean = clean
        self.text_input = text_input
        self.keep_side = keep_side
        self._decoded: dict[Path, "Image.Image"] = {}

    def parse(self, row: Row, errors: list[RowError]) -> _ParsedRow:
        images, views = self._images(row, errors)
        text = self._text(row, errors)
        if not images and text is None and not self._input_errors(row, errors):
            errors.append(RowError(row.line, "inputs", "row has neither an image nor text"))
        sample = Sample.of_images(
            images, views,
            texts={self.text_input: text},
            id=self._row_id(row),
            meta={"line": row.line, "source": str(self.table.path), **self._grouping(row)},
        )
        return _ParsedRow(row.line, sample)

    def _grouping(self, row: Row) -> dict[str, str]:
        """The row's group (for grouped validation splits) and image path (rows that share
        one image need its features computed once)."""
        found = {}
        column = self.options.group_col
        if column and not label_rules.is_missing(row.values.get(column)):
            found["group"] = str(row.values[column])
        image = row.values.get(self.options.image_col) if self.options.image_col else None
        entries = image_entries(image) if not label_rules.is_missing(image) else None
        if entries:
            found["image_ref"] = "|".join(path for path, _ in entries)
        return found

    def _input_errors(self, row: Row, errors: list[RowError]) -> bool:
        names = {self.options.image_col, self.options.text_col}
        return any(error.line == row.line and error.field in names for error in errors)

    def _images(self, row: Row, errors: list[RowError]) -> tuple[list["Image.Image"], list[str | None]]:
        """The row's images with their view names: one path, or a list of several (a JSON
        list; in CSV also `a.png|b.png`), each a path or {"path": ..., "view": ...}."""
        column = self.options.image_col
        cell = row.values.get(column) if column else None
        if label_rules.is_missing(cell):
            return [], []
        entries = image_entries(cell)
        if entries is None:
            errors.append(RowError(row.line, column, f"expected an image path or a list of them, got {type(cell).__name__}"))
            return [], []
        images, views = [], []
        for path, view in entries:
            try:
                images.append(self._load(path))
                views.append(view)
            except (OSError, InputError) as exc:
                reason = exc.reason if isinstance(exc, InputError) else str(exc.strerror or exc)
                errors.append(RowError(row.line, column, f"{path}: {reason}"))
        return images, views

    def _load(self, cell: str) -> "Image.Image":
        path = Path(cell)
        if not path.is_absolute():
            path = self.table.path.parent / path  # relative to the manifest, not the cwd
        # Rows often share an image (posts of one photo): decode it once, hold it once.
        if path in self._decoded:
            return self._decoded[path]
        if not path.is_file():
            raise InputError("image", "file not found")
        image = decode_image(path.read_bytes(), target_size=self.keep_side)
        if max(image.size) > self.keep_side:
            image.thumbnail((self.keep_side, self.keep_side))
        self._decoded[path] = image
        return image

    def _text(self, row: Row, errors: list[RowError]) -> str | None:
        column = self.options.text_col
        cell = row.values.get(column) if column else None
        if cell is not None and not isinstance(cell, (str, int, float)):
            errors.append(RowError(row.line, column, f"expected text, got {type(cell).__name__}"))
            return None
        text = self.clean(self.text_input, None if cell is None else str(cell))
        if text is None and self.options.text_required:
            errors.append(RowError(row.line, column or "text", "empty text, but text is required"))
        return text

    @staticmethod
    def _row_id(row: Row) -> str:
        value = row.values.get("id")
        return str(value) if not label_rules.is_missing(value) else f"line-{row.line}"


def image_entries(cell: Any) -> list[tuple[str, str | None]] | None:
    """(path, view) of each image an image cell names; None when it is not an image cell."""
    if isinstance(cell, str):
        text = cell.strip()
        if text.startswith("["):
            try:
                return image_entries(json.loads(text))
            except json.JSONDecodeError:
                return None
        return [(part.strip(), None) for part in text.split("|") if part.strip()]
    if isinstance(cell, dict):
        path, view = cell.get("path"), cell.get("view")
        if isinstance(path, str) and path.strip() and (view is None or isinstance(view, str)):
            return [(path.strip(), view or None)]
        return None
    if isinstance(cell, list):
        found: list[tuple[str, str | None]] = []
        for item in cell:
            entries = image_entries(item) if isinstance(item, (str, dict)) else None
            if entries is None:
                return None
            found.extend(entries)
        return found
    return None


def _read_labels(
    table: Table,
    parsed: list[_ParsedRow],
    label_cols: list[str],
    options: DatasetOptions,
    schema: LabelSchema | None,
    errors: list[RowError],
) -> dict[str, TaskKind]:
    """Parse every label cell into the samples; return each column's kind."""
    rows_by_line = {row.line: row for row in table.rows}
    kinds: dict[str, TaskKind] = {}
    for column in label_cols:
        cells = [(item, rows_by_line[item.line].values.get(column)) for item in parsed]
        forced = schema.task(column).kind if schema else options.task_kinds.get(column)
        kinds[column] = forced or _infer(cells, table.typed)
        strict = table.typed and forced is None
        for item, cell in cells:
            value = _parse_cell(item.line, column, cell, kinds[column], table.typed, strict, errors)
            if value is not None and schema is not None:
                value = _checked(schema.task(column), item.line, value, errors)
            item.sample.labels[column] = value
    for item in parsed:
        cells = rows_by_line[item.line].values
        if all(label_rules.is_missing(cells.get(column)) for column in label_cols):
            errors.append(RowError(item.line, ",".join(label_cols), "no label given"))
    return kinds


def _infer(cells: list[tuple[_ParsedRow, Any]], typed: bool) -> TaskKind:
    readable = []
    for item, cell in cells:
        if label_rules.is_missing(cell):
            continue
        try:
            label_rules.natural_kind(cell, typed)
        except label_rules.LabelParseError:
            continue  # reported when the cell is parsed
        readable.append(cell)
    return label_rules.infer_kind(readable, typed)


def _parse_cell(
    line: int, column: str, cell: Any, kind: TaskKind, typed: bool, strict: bool, errors: list[RowError]
) -> LabelValue:
    if label_rules.is_missing(cell):
        return None
    try:
        return label_rules.parse_label(cell, kind, typed=typed, strict=strict)
    except label_rules.LabelParseError as exc:
        errors.append(RowError(line, column, str(exc)))
        return None


def _checked(task: Task, line: int, value: LabelValue, errors: list[RowError]) -> LabelValue:
    try:
        label_rules.check_known(task, value)
    except label_rules.LabelParseError as exc:
        errors.append(RowError(line, task.name, str(exc)))
        return None
    return value


def _finish(
    table: Table,
    parsed: list[_ParsedRow],
    kinds: dict[str, TaskKind],
    errors: list[RowError],
    options: DatasetOptions,
    schema: LabelSchema | None,
) -> Dataset:
    bad_lines = {error.line for error in errors}
    good = [item.sample for item in parsed if item.line not in bad_lines]
    errors.sort(key=lambda error: error.line)
    if errors and not options.skip_bad_rows:
        raise DatasetError(str(table.path), errors)
    if not good and errors:
        raise ManifestError(table.path, [f"no usable rows; all {len(bad_lines)} row(s) are bad"], errors)
    problems = [] if good else ["no rows"]
    if schema is None and good:
        schema = _inferred_schema(good, kinds, problems)
    if problems:
        skipped = f" ({len(bad_lines)} bad row(s) skipped)" if bad_lines else ""
        raise ManifestError(table.path, [problem + skipped for problem in problems])
    return Dataset(samples=good, label_schema=schema, skipped=errors)


def _inferred_schema(good: list[Sample], kinds: dict[str, TaskKind], problems: list[str]) -> LabelSchema | None:
    """One task per label column, labels sorted, built from the rows that are kept."""
    tasks = []
    for column, kind in kinds.items():
        values = [sample.labels[column] for sample in good if sample.labels[column] is not None]
        try:
            tasks.append(label_rules.build_task(column, kind, values))
        except ValueError as exc:
            problems.append(f"column {column!r}: {exc}")
    return LabelSchema(tasks=tuple(tasks)) if not problems else None
