"""Score a whole JSONL/CSV file with a model bundle: `twinlens predict --data FILE --out OUT`.

Each input row becomes one JSON line in OUT, in input order: the prediction (every head's
probabilities, the modality contributions), the plugin's decision and the model version;
a row that cannot be scored becomes a line naming its input line number and why. OUT is
written batch by batch and flushed to disk, so an interrupted run resumes: rows whose line
number is already in OUT are skipped and a torn last line is cut off. Rows are read and
preprocessed on threads while the previous batch is in the model, and only two batches
of decoded images are held at a time, so a file of any length fits in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from twinlens.contract.errors import RowError, TwinLensError
from twinlens.contract.json_values import json_safe
from twinlens.contract.plugin import Plugin, RawInput
from twinlens.contract.table import Row, read_table

RESERVED_COLUMNS = ("id",)


@dataclass
class BulkOptions:
    batch_size: int = 32
    contributions: bool = True
    resume: bool = True
    threads: int = 2
    image_col: str = "image"


@dataclass
class BulkSummary:
    rows: int = 0  # rows in the input file (parsed or not)
    scored: int = 0  # scored in this run
    already_done: int = 0  # found in OUT from an earlier run
    bad: list[RowError] = field(default_factory=list)  # this run's unscorable rows


@dataclass
class _Prepared:
    row: Row
    encoded: Any = None
    sample: Any = None
    error: RowError | None = None


def score_file(plugin: Plugin, predictor: Any, data: Path, out: Path, options: BulkOptions | None = None,
               progress: Callable[[int], None] | None = None) -> BulkSummary:
    """Score every row of `data` not already in `out`; `progress(n)` is called per batch."""
    options = options or BulkOptions()
    table = read_table(Path(data))
    done = finished_lines(out) if options.resume else set()
    summary = BulkSummary(rows=len(table.rows) + len(table.errors), already_done=len(done))
    # Rows that did not even parse travel with the others, so OUT keeps the input order.
    todo = sorted([row for row in table.rows if row.line not in done] +
                  [error for error in table.errors if error.line not in done], key=lambda item: item.line)
    mode = "a" if options.resume else "w"
    with open(out, mode, encoding="utf-8") as sink, ThreadPoolExecutor(max(1, options.threads)) as pool:
        for prepared in _prefetched(pool, todo, lambda item: _prepare(plugin, predictor, item, table.path.parent, options), options.batch_size):
            lines, bad = _score_batch(plugin, predictor, prepared, options)
            _write(sink, lines)
            summary.bad += bad
            summary.scored += len(prepared) - len(bad)
            if progress is not None:
                progress(len(prepared))
    return summary


def finished_lines(out: Path) -> set[int]:
    """Input line numbers already in `out`; cuts off a last line torn by an interruption."""
    out = Path(out)
    if not out.exists():
        return set()
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(out, "r+b") as handle:
            handle.truncate(keep)
    done = set()
    for number, line in enumerate(data[:keep].decode("utf-8").splitlines(), start=1):
        try:
            done.add(int(json.loads(line)["line"]))
        except (ValueError, KeyError, TypeError):
            raise TwinLensError(f"{out}: line {number} is not a scored row; use another --out, or --no-resume to overwrite it") from None
    return done


def _prefetched(pool: ThreadPoolExecutor, rows: list, prepare: Callable[[Any], _Prepared], size: int) -> Iterator[list[_Prepared]]:
    """Batches of prepared rows, the next batch preparing while the caller scores this one."""
    chunks = [rows[start : start + size] for start in range(0, len(rows), size)]
    pending: list[Future] | None = [pool.submit(prepare, row) for row in chunks[0]] if chunks else None
    for index in range(len(chunks)):
        current = pending or []
        pending = [pool.submit(prepare, row) for row in chunks[index + 1]] if index + 1 < len(chunks) else None
        yield [future.result() for future in current]


def _prepare(plugin: Plugin, predictor: Any, row: Row | RowError, folder: Path, options: BulkOptions) -> _Prepared:
    if isinstance(row, RowError):  # unparseable: nothing to prepare
        return _Prepared(Row(row.line, {}), error=row)
    try:
        sample = plugin.prepare(_raw_input(plugin, row, folder, options.image_col))
        return _Prepared(row, predictor.preprocess(sample), sample)
    except TwinLensError as error:
        field_name = getattr(error, "field", "row")
        reason = getattr(error, "reason", str(error))
        return _Prepared(row, error=RowError(row.line, field_name, reason))


def _raw_input(plugin: Plugin, row: Row, folder: Path, image_col: str) -> RawInput:
    from twinlens.contract.errors import InputError

    from twinlens.contract.manifest import image_entries
    from twinlens.contract.plugin import RawImage

    schema = plugin.input_schema()
    images = []
    cell = row.values.get(image_col)
    if schema.image is not None and cell not in (None, ""):
        # One path, or a list of several (a case of several images, each maybe with its view).
        entries = image_entries(cell) or [(str(cell), None)]
        if len(entries) > schema.image.max_images:
            raise InputError(image_col, f"{len(entries)} images; plugin {plugin.name!r} takes at most {schema.image.max_images}")
        for name, view in entries:
            path = Path(name)
            path = path if path.is_absolute() else folder / path
            try:
                images.append(RawImage(path.read_bytes(), None, view))
            except OSError as error:
                raise InputError(image_col, f"cannot read {name}: {error.strerror or error}") from None
    texts = {name: _text(row.values.get(name)) for name in schema.text_names}
    metadata = {m.name: row.values[m.name] for m in schema.metadata if m.name in row.values}
    return RawInput.of_images(images, texts=texts, metadata=metadata)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _score_batch(plugin: Plugin, predictor: Any, prepared: list[_Prepared], options: BulkOptions) -> tuple[list[dict], list[RowError]]:
    from twinlens.engine.predictor import sample_extras

    good = [p for p in prepared if p.error is None]
    predictions = predictor.predict_encoded([p.encoded for p in good], contributions=options.contributions,
                                            batch_size=options.batch_size) if good else []
    answers = {}
    for item, prediction in zip(good, predictions):
        prediction.extras.update(sample_extras(item.sample))
        answers[item.row.line] = {"line": item.row.line, "id": _row_id(item.row), "model_version": prediction.model_version,
                                  "prediction": prediction.to_dict(), "decision": plugin.decide(prediction)}
    bad = [p.error for p in prepared if p.error is not None]
    lines = [answers[p.row.line] if p.error is None else _error_line(p.error, _row_id(p.row)) for p in prepared]
    return lines, bad


def _row_id(row: Row) -> str | None:
    value = row.values.get("id")
    return None if value is None else str(value)


def _error_line(error: RowError, row_id: str | None = None) -> dict[str, Any]:
    return {"line": error.line, "id": row_id, "error": {"field": error.field, "reason": error.reason}}


def _write(sink, lines: list[dict]) -> None:
    if not lines:
        return
    sink.write("".join(json.dumps(json_safe(line), allow_nan=False) + "\n" for line in lines))
    sink.flush()
    os.fsync(sink.fileno())  # a resumed run trusts what is on disk


# -- scoring a stream of inputs (the batch API's workers) ----------------------------------


@dataclass
class Scored:
    """One item of `score_stream`: its answer, or why it could not be scored."""

    item: Any
    answer: dict[str, Any] | None = None  # model_version, prediction (every head's probabilities), decision
    error: dict[str, Any] | None = None  # field, reason


def score_stream(plugin: Plugin, predictor: Any, items: Iterable[Any], load: Callable[[Any], RawInput],
                 options: BulkOptions | None = None) -> Iterator[list[Scored]]:
    """Score `items` in batches of `options.batch_size`, yielding each batch's answers in
    order. `load(item)` gives the item's RawInput; it and the plugin's `prepare` run on
    threads one batch ahead of the model, as in `score_file`. An item that fails to load or
    prepare (any exception) fails alone; `items` is read lazily, a batch at a time."""
    options = options or BulkOptions()

    def prepare(item: Any) -> Scored | tuple[Any, Any, Any]:
        try:
            sample = plugin.prepare(load(item))
            return item, predictor.preprocess(sample), sample
        except TwinLensError as error:
            return Scored(item, error={"field": getattr(error, "field", None), "reason": getattr(error, "reason", str(error))})
        except Exception as error:  # a bug or a corrupt input in one row must not stop the others
            return Scored(item, error={"field": None, "reason": f"preprocessing failed: {error.__class__.__name__}: {error}"})

    with ThreadPoolExecutor(max(1, options.threads)) as pool:
        for prepared in _prefetched_lazily(pool, items, prepare, options.batch_size):
            yield _score_prepared(plugin, predictor, prepared, options)


def _prefetched_lazily(pool: ThreadPoolExecutor, items: Iterable[Any], prepare: Callable[[Any], Any], size: int) -> Iterator[list]:
    source = iter(items)
    pending = [pool.submit(prepare, item) for item in islice(source, size)]
    while pending:
        current = pending
        pending = [pool.submit(prepare, item) for item in islice(source, size)]
        yield [future.result() for future in current]


def _score_prepared(plugin: Plugin, predictor: Any, prepared: list, options: BulkOptions) -> list[Scored]:
    from twinlens.engine.predictor import sample_extras

    ready = [entry for entry in prepared if not isinstance(entry, Scored)]
    predictions = _predict_each_alone_on_failure(predictor, [encoded for _, encoded, _ in ready], options)
    answers: dict[int, Scored] = {}
    for (item, _, sample), prediction in zip(ready, predictions):
        answers[id(item)] = _answer(plugin, item, sample, prediction, sample_extras)
    return [entry if isinstance(entry, Scored) else answers[id(entry[0])] for entry in prepared]


def _predict_each_alone_on_failure(predictor: Any, encoded: list, options: BulkOptions) -> list:
    """One model call for the batch; if it fails, one call per item, so one bad input
    fails only itself (its entry is then the exception)."""
    if not encoded:
        return []
    try:
        return predictor.predict_encoded(encoded, contributions=options.contributions, batch_size=options.batch_size)
    except Exception:
        alone = []
        for item in encoded:
            try:
                alone.append(predictor.predict_encoded([item], contributions=options.contributions)[0])
            except Exception as error:
                alone.append(error)
        return alone


def _answer(plugin: Plugin, item: Any, sample: Any, prediction: Any, extras: Callable[[Any], dict]) -> Scored:
    if isinstance(prediction, Exception):
        return Scored(item, error={"field": None, "reason": f"the model failed on this input: {prediction.__class__.__name__}: {prediction}"})
    prediction.extras.update(extras(sample))
    try:
        decision = plugin.decide(prediction)
    except Exception as error:
        return Scored(item, error={"field": None, "reason": f"the plugin's decision failed: {error.__class__.__name__}: {error}"})
    return Scored(item, answer={"model_version": prediction.model_version, "prediction": prediction.to_dict(), "decision": decision})
