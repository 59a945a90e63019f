"""The `generic` plugin: image + text + label columns from JSONL or CSV.

Manifest format (one row per example; image paths are relative to the manifest file):

* JSONL: ``{"id": "a1", "image": "images/a1.png", "text": "...", "label": "cat"}``;
  a multilabel column holds a JSON list (``["x", "y"]``), a regression column a number.
* CSV (header on line 1): the same columns; a multilabel cell is ``x|y`` or a JSON list
  string ``["x", "y"]``; ``[]`` means no label applies. A column of numbers is taken as
  regression: force ``multiclass`` (DatasetOptions.task_kinds / ``--task-kind``) when the
  numbers are class ids.

`read_manifest` is public so other plugins with a table format can reuse it with their
fixed label schema (the scaffold from ``twinlens plugin new`` does).
"""

from twinlens.generic.plugin import DEFAULT_REVIEW_THRESHOLD, GenericPlugin
from twinlens.generic.reader import read_manifest

__all__ = ["DEFAULT_REVIEW_THRESHOLD", "GenericPlugin", "read_manifest"]
