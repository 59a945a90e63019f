"""Reading data sets for the engine commands.

A validation or evaluation set must speak the label schema the model was (or is being)
trained with. For plugins that learn their schema from the data (generic), the set is
read with the model's task kinds forced, then every label is checked against the
model's labels; a label the model does not know is a bad row like any other.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from twinlens.cli.render import print_skipped
from twinlens.contract.errors import DatasetError, RowError
from twinlens.contract.plugin import Dataset, DatasetOptions, Plugin
from twinlens.contract.schema import LabelSchema, Task


def read_data(plugin: Plugin, path: Path, options: DatasetOptions) -> Dataset:
    dataset = plugin.read_dataset(Path(path), options)
    print_skipped(dataset.skipped, str(path))
    return dataset


def read_for_schema(plugin: Plugin, path: Path, options: DatasetOptions, schema: LabelSchema) -> Dataset:
    """Read `path` as data for a model with `schema`."""
    if "label_cols" not in options.model_fields_set:
        options = options.model_copy(update={"label_cols": schema.task_names})
    if _takes_schema(plugin):
        # Reading against the model's schema: kinds come from it, and a split holding a
        # single class is fine (inferring a schema from it alone would not be).
        dataset = plugin.read_dataset(Path(path), options, label_schema=schema)  # type: ignore[call-arg]
    else:
        dataset = plugin.read_dataset(Path(path), options)
    dataset = conform(dataset, schema, skip_bad_rows=options.skip_bad_rows, source=str(path))
    print_skipped(dataset.skipped, str(path))
    return dataset


def _takes_schema(plugin: Plugin) -> bool:
    """Plugins that learn their labels from the data (generic) may read against a given
    schema through a `label_schema` keyword of read_dataset."""
    if plugin.label_schema() is not None:
        return False
    return "label_schema" in inspect.signature(plugin.read_dataset).parameters


def conform(dataset: Dataset, schema: LabelSchema, *, skip_bad_rows: bool, source: str) -> Dataset:
    """Keep `dataset`'s samples under `schema`; labels it does not declare are bad rows."""
    kept, problems = [], []
    for sample in dataset.samples:
        found = [
            RowError(int(sample.meta.get("line", 0)), task.name, reason)
            for task in schema.tasks
            if (reason := _misfit(task, sample.labels.get(task.name)))
        ]
        problems.extend(found)
        if not found:
            kept.append(sample)
    if problems and not skip_bad_rows:
        raise DatasetError(source, problems)
    return Dataset(samples=kept, label_schema=schema, skipped=[*dataset.skipped, *problems])


def _misfit(task: Task, value: object) -> str | None:
    """Why `value` cannot be a label of `task`, or None when it can."""
    if value is None:
        return None
    if task.kind == "regression":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"expected a number, got {value!r}"
    given = [value] if task.kind == "multiclass" and isinstance(value, str) else value
    if not isinstance(given, list):
        return f"expected a {task.kind} label, got {value!r}"
    unknown = [label for label in given if label not in task.label_names]
    if unknown:
        return f"label(s) {unknown} unknown to the model, which knows {task.label_names}"
    return None
