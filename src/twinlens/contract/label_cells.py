"""Label columns: infer each column's task kind, parse its cells, build the task.

The rules, which the README documents for users:

* JSONL keeps JSON types: a string is a class name (multiclass), a list of strings is a
  set of labels (multilabel), a number is a value (regression); true/false are the
  classes "true"/"false". A column takes the kind most of its rows have; a row whose
  value is of another kind is a bad row (mixed label types).
* CSV cells are all text: a column is multilabel when any cell is a JSON list
  (``["a", "b"]``) or labels joined by ``|`` (``a|b``); otherwise regression when every
  cell is a number; otherwise multiclass (numbers are then class names).
  ``[]`` is "no label applies"; an empty cell means "not labelled".
* A forced kind (DatasetOptions.task_kinds, or a plugin's fixed schema) parses cells
  leniently as that kind instead.
"""

from __future__ import annotations

import json
import math
from typing import Any

from twinlens.contract.sample import LabelValue
from twinlens.contract.schema import Label, Task, TaskKind

KIND_ORDER: tuple[TaskKind, ...] = ("multiclass", "multilabel", "regression")
NOUNS = {"multiclass": "class name", "multilabel": "label list", "regression": "number"}


class LabelParseError(ValueError):
    """One cell cannot be read as a label of the column's kind."""


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def natural_kind(value: Any, typed: bool) -> TaskKind:
    """The kind a non-missing cell looks like on its own."""
    if not typed:
        text = value.strip()
        if text.startswith("[") or "|" in text:
            return "multilabel"
        return "regression" if _parse_number(text) is not None else "multiclass"
    if isinstance(value, (str, bool)):
        return "multiclass"
    if isinstance(value, (int, float)):
        return "regression"
    if isinstance(value, list):
        return "multilabel"
    raise LabelParseError(f"unsupported label type {type(value).__name__} (expected a string, list or number)")


def infer_kind(values: list[Any], typed: bool) -> TaskKind:
    """The kind of a column from its non-missing, parseable cells."""
    kinds = [natural_kind(value, typed) for value in values]
    if not typed:
        if "multilabel" in kinds:
            return "multilabel"
        return "regression" if kinds and all(kind == "regression" for kind in kinds) else "multiclass"
    counts = {kind: kinds.count(kind) for kind in KIND_ORDER}
    return max(KIND_ORDER, key=lambda kind: (counts[kind], -KIND_ORDER.index(kind)))


def parse_label(value: Any, kind: TaskKind, *, typed: bool, strict: bool) -> LabelValue:
    """Read one non-missing cell as a `kind` label.

    `strict` (JSONL with an inferred kind) refuses a cell whose own kind differs: a
    number among class names is more likely a data error than a class called "3".
    """
    if strict:
        own = natural_kind(value, typed)
        if own != kind:
            raise LabelParseError(
                f"mixed label types: {value!r} is a {NOUNS[own]}, but this column holds {NOUNS[kind]}s "
                "(force the column's task kind to read it anyway)"
            )
    if kind == "multiclass":
        return _as_class(value)
    if kind == "multilabel":
        return _as_label_set(value)
    return _as_number(value)


def _as_class(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format(value, "g")
    if isinstance(value, str):
        return value.strip()
    raise LabelParseError(f"expected a class name, got {type(value).__name__}")


def _as_label_set(value: Any) -> list[str]:
    if isinstance(value, str):
        value = _split_labels(value)
    if not isinstance(value, list):
        raise LabelParseError(f"expected a list of labels, got {type(value).__name__}")
    labels: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise LabelParseError(f"every label in a list must be a non-empty string, got {item!r}")
        if item.strip() not in labels:
            labels.append(item.strip())
    return labels


def _split_labels(text: str) -> list[Any]:
    text = text.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelParseError(f"malformed JSON list of labels: {exc.msg}") from None
        if not isinstance(parsed, list):
            raise LabelParseError("expected a JSON list of labels")
        return parsed
    return [part.strip() for part in text.split("|") if part.strip()]


def _as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LabelParseError(f"expected a number, got {type(value).__name__}")
    number = _parse_number(value) if isinstance(value, str) else float(value)
    if number is None or not math.isfinite(number):
        raise LabelParseError(f"expected a finite number, got {value!r}")
    return number


def _parse_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def build_task(name: str, kind: TaskKind, values: list[LabelValue]) -> Task:
    """The task a column defines; ValueError when its labels cannot make a head."""
    if kind == "regression":
        if not values:
            raise ValueError("no labelled rows")
        return Task(name=name, kind=kind, description=f"inferred from column {name!r}")
    if kind == "multiclass":
        names = sorted(set(values))  # type: ignore[arg-type]
        if len(names) < 2:
            raise ValueError(f"a multiclass column needs at least two classes, found {names}")
    else:
        names = sorted({label for labels in values for label in labels})  # type: ignore[union-attr]
        if not names:
            raise ValueError("a multilabel column needs at least one label, found none")
    labels = tuple(Label(name=label) for label in names)
    return Task(name=name, kind=kind, labels=labels, description=f"inferred from column {name!r}")


def check_known(task: Task, value: LabelValue) -> None:
    """A label must be one the task declares (fixed schemas, validation sets)."""
    if task.kind == "regression" or value is None:
        return
    given = [value] if isinstance(value, str) else list(value)  # type: ignore[arg-type]
    unknown = [label for label in given if label not in task.label_names]
    if unknown:
        raise LabelParseError(f"unknown label(s) {unknown}; task {task.name!r} has {task.label_names}")
