"""Data set readers: the generic manifest (JSONL), the CheXpert CSV layout, the MIMIC-CXR layout.

Every reader returns Samples with labels {"findings": [positive labels], "urgency": level}
and the uncertain (-1) findings in `meta["uncertain"]["findings"]`, where the engine
applies TrainConfig.uncertain_policy (ignore masks them out of the loss). Bad rows are
collected and raised together (DatasetError) unless `skip_bad_rows`. A manifest's lines
that are one study (same `study_id`, or DICOMs of one StudyInstanceUID: studies.py) are
read as one sample with each image's view.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from twinlens.contract.errors import DatasetError, InputError, RowError
from twinlens.contract.manifest import image_entries
from twinlens.contract.plugin import Dataset, DatasetOptions
from twinlens.contract.sample import Sample
from twinlens_chest_xray.gate import LATERAL_VIEWS
from twinlens_chest_xray.known_phi import KnownPhi
from twinlens_chest_xray.labels import (FINDINGS, FINDINGS_TASK, NO_FINDING, SUPPORT_DEVICES, URGENCY_LEVELS,
                                        URGENCY_TASK, canonical_finding, label_schema, urgency_from_findings,
                                        with_no_finding)
from twinlens_chest_xray.reports import labels_to_targets, label_report
from twinlens_chest_xray.studies import group_lines

UNCERTAIN_POLICIES = ("ignore", "positive", "negative")
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
CHEXPERT_META = {"Sex": "sex", "Age": "age", "Frontal/Lateral": "frontal_lateral", "AP/PA": "ap_pa"}

# (image bytes, media type) -> (image, doubts, what its DICOM header says about the patient,
# its view from the header or None); given by the plugin so readers share its loading.
ImageLoader = Callable[[bytes, str | None], tuple[Any, list[str], KnownPhi, str | None]]
# Views a study may have, in slot order; more images of a study than this are a bad row.
STUDY_VIEWS = ("frontal", "lateral")
TextCleaner = Callable[[str, str | None], str | None]


class _Row(Exception):
    """One bad row; collected, not raised past the reader."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


class Reader:
    def __init__(self, load_image: ImageLoader, clean_text: TextCleaner, uncertain_policy: str | None = None):
        if uncertain_policy is not None and uncertain_policy not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain_policy must be one of {UNCERTAIN_POLICIES}")
        self.load_image, self.clean_text, self.policy = load_image, clean_text, uncertain_policy

    def read(self, path: Path, options: DatasetOptions | None = None) -> Dataset:
        options = options or DatasetOptions()
        path = Path(path)
        rows = self._rows_for(path)
        samples, errors = [], []
        for line, build in rows:
            try:
                samples.append(build())
            except _Row as bad:
                errors.append(RowError(line, bad.field, bad.reason))
        if errors and not options.skip_bad_rows:
            raise DatasetError(str(path), errors)
        if not samples:
            raise DatasetError(str(path), errors or [RowError(0, "data", "no usable rows")])
        apply_uncertain_policy(samples, self.policy)
        return Dataset(samples=samples, label_schema=label_schema(), skipped=errors)

    def _rows_for(self, path: Path) -> list[tuple[int, Callable[[], Sample]]]:
        if not path.exists():
            raise DatasetError(str(path), [RowError(0, "path", "does not exist")])
        if path.is_dir():
            if (path / "manifest.jsonl").is_file():
                return self._manifest_rows(path / "manifest.jsonl")
            if (path / "files").is_dir():
                return self._mimic_rows(path)
            csvs = sorted(path.glob("*.csv"))
            if csvs:
                return self._chexpert_rows(csvs[0])
            raise DatasetError(str(path), [RowError(0, "path", "no manifest.jsonl, files/ (MIMIC-CXR) or CheXpert .csv here")])
        if path.suffix == ".jsonl":
            return self._manifest_rows(path)
        if path.suffix == ".csv":
            return self._chexpert_rows(path)
        raise DatasetError(str(path), [RowError(0, "path", "expected a .jsonl manifest, a CheXpert .csv or a MIMIC-CXR folder")])

    # -- shared ------------------------------------------------------------------------
    def _sample(self, *, sample_id: str, image_path: Path | None, texts: dict[str, str | None], positives: list[str],
                uncertain: list[str], urgency: str | None, meta: dict[str, Any],
                image_paths: list[tuple[Path, str | None]] | None = None) -> Sample:
        """One study: `image_path`, or several `image_paths` (each with its view, None to
        take it from the DICOM header's ViewPosition)."""
        paths = image_paths if image_paths is not None else ([(image_path, None)] if image_path is not None else [])
        if len(paths) > len(STUDY_VIEWS):
            raise _Row("image", f"{len(paths)} images; a study takes at most {len(STUDY_VIEWS)} ({', '.join(STUDY_VIEWS)})")
        images, views, doubts = [], [], []
        for path, view in paths:
            image, image_doubts, known, header_view = self._image(path)
            # The study's header names the patient: out of its texts before they are cleaned.
            texts = {name: known.scrub(text) if text else text for name, text in texts.items()}
            images.append(image)
            views.append(view or header_view)
            doubts += image_doubts
        cleaned = {name: self.clean_text(name, text) for name, text in texts.items()}
        if not images and not any(cleaned.values()):
            raise _Row("inputs", "neither an image nor any text")
        positives, uncertain = _no_finding(positives, uncertain)
        labels = {FINDINGS_TASK: positives, URGENCY_TASK: urgency or urgency_from_findings(positives)}
        meta = {**meta, "uncertain": {FINDINGS_TASK: uncertain}, "input_doubts": doubts}
        patient = _patient(meta, sample_id)
        if patient is not None:  # validation splits keep each patient's studies on one side
            meta["group"] = patient
        return Sample.of_images(images, views, texts=cleaned, labels=labels, id=sample_id, meta=meta)

    def _image(self, path: Path) -> tuple[Any, list[str], KnownPhi, str | None]:
        if not path.is_file():
            raise _Row("image", f"file not found: {path}")
        try:
            return self.load_image(path.read_bytes(), _media_type(path))
        except InputError as exc:
            raise _Row("image", f"{path.name}: {exc.reason}") from None

    # -- manifest ----------------------------------------------------------------------
    def _manifest_rows(self, path: Path) -> list[tuple[int, Callable[[], Sample]]]:
        lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
        return [(study[0][0], lambda study=study: self._manifest_study(path.parent, study))
                for study in group_lines(path.parent, lines)]

    def _manifest_study(self, root: Path, lines: list[tuple[int, str]]) -> Sample:
        """One sample from a study's lines (one line, or one per image of the study)."""
        rows = [self._manifest_row(root, text, number) for number, text in lines]
        first = rows[0]
        for row, (number, _) in zip(rows[1:], lines[1:]):
            for field in ("findings", "urgency", "meta"):
                if row[field] != first[field]:
                    name = "patient_id" if field == "meta" else field
                    raise _Row(name, f"line {number} is the same study as line {lines[0][0]} but its {name} differ")
        texts = {name: _joined(row["texts"][name] for row in rows) for name in first["texts"]}
        positives, uncertain = first["findings"]
        return self._sample(sample_id=first["id"], image_path=None,
                            image_paths=[entry for row in rows for entry in row["images"]],
                            texts=texts, positives=positives, uncertain=uncertain, urgency=first["urgency"],
                            meta=first["meta"])

    def _manifest_row(self, root: Path, line: str, number: int) -> dict[str, Any]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _Row("json", f"not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise _Row("json", "each line must be a JSON object")
        positives, uncertain = _manifest_findings(row)
        findings = (sorted(positives), sorted(uncertain))  # compared across a study's lines
        urgency = row.get("urgency")
        if urgency is not None and urgency not in URGENCY_LEVELS:
            raise _Row("urgency", f"{urgency!r} is not one of {', '.join(URGENCY_LEVELS)}")
        image = row.get("image")
        entries = image_entries(image) if image else []
        if entries is None:
            raise _Row("image", "expected an image path or a list of them (paths or {\"path\": ..., \"view\": ...})")
        return {"id": str(row.get("id", f"line-{number}")), "images": [(root / path, view) for path, view in entries],
                "texts": {"report": _text(row, "report"), "history": _text(row, "history")},
                "findings": findings, "urgency": urgency,
                "meta": {key: str(row[key]) for key in ("patient_id", "subject_id") if row.get(key) not in (None, "")}}

    # -- CheXpert ----------------------------------------------------------------------
    def _chexpert_rows(self, path: Path) -> list[tuple[int, Callable[[], Sample]]]:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("Path", *FINDINGS) if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(str(path), [RowError(1, "header", f"missing CheXpert column(s): {', '.join(missing)}")])
            records = list(reader)
        # Data rows start on line 2 (line 1 is the header).
        return [(n, lambda r=r: self._chexpert_sample(path, r)) for n, r in enumerate(records, start=2)]

    def _chexpert_sample(self, csv_path: Path, row: dict[str, str]) -> Sample:
        labels = {}
        for name in FINDINGS:
            value = (row.get(name) or "").strip()
            if value not in ("", "1", "1.0", "0", "0.0", "-1", "-1.0"):
                raise _Row(name, f"{value!r} is not 1, 0, -1 or blank")
            if value:
                labels[name] = int(float(value))
        positives, uncertain = labels_to_targets(labels)
        meta = {key: row.get(column) for column, key in CHEXPERT_META.items() if row.get(column)}
        return self._sample(sample_id=row["Path"], image_path=_chexpert_image(csv_path, row["Path"]),
                            texts={"report": row.get("Report") or None, "history": row.get("History") or None},
                            positives=positives, uncertain=uncertain, urgency=None, meta=meta)

    # -- MIMIC-CXR ---------------------------------------------------------------------
    def _mimic_rows(self, root: Path) -> list[tuple[int, Callable[[], Sample]]]:
        labels = _mimic_label_table(root)
        views = _mimic_view_table(root)
        studies = sorted(p for p in (root / "files").glob("p*/p*/s*") if p.is_dir())
        return [(n, lambda s=s: self._mimic_sample(root, s, labels, views)) for n, s in enumerate(studies, start=1)]

    def _mimic_sample(self, root: Path, study: Path, table: dict[str, dict[str, int]], views: dict[str, str]) -> Sample:
        report_file = study.parent / f"{study.name}.txt"
        report = report_file.read_text(encoding="utf-8", errors="replace") if report_file.is_file() else None
        images = sorted(p for p in study.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frontal = [p for p in images if views.get(p.stem, "PA") in ("PA", "AP")]
        lateral = [p for p in images if views.get(p.stem) in LATERAL_VIEWS]
        # The study's frontal and lateral views (the metadata table's ViewPosition), one each.
        first = frontal[:1] or images[:1]
        study_images = [(first[0], "frontal" if frontal else None)] if first else []
        if lateral and lateral[0] not in first:
            study_images.append((lateral[0], "lateral"))
        study_id = study.name.lstrip("s")
        if study_id in table:
            labels = table[study_id]
        elif report is not None:
            labels = label_report(report)
        else:
            raise _Row(str(study.relative_to(root)), "no labels in the label CSV and no report to label")
        positives, uncertain = labels_to_targets(labels)
        return self._sample(sample_id=study.name, image_path=None, image_paths=study_images,
                            texts={"report": report, "history": None},
                            positives=positives, uncertain=uncertain, urgency=None,
                            meta={"subject_id": study.parent.name.lstrip("p"), "study_id": study_id,
                                  "labels_from": "csv" if study_id in table else "report labeller"})


def _patient(meta: dict[str, Any], sample_id: str) -> str | None:
    """The patient a study belongs to: a manifest's patient_id/subject_id, MIMIC's subject,
    or CheXpert's patientNNNNN path folder."""
    for key in ("patient_id", "subject_id"):
        if meta.get(key):
            return str(meta[key])
    found = re.search(r"(patient\d+)", sample_id)
    return found.group(1) if found else None


def _no_finding(positives: list[str], uncertain: list[str]) -> tuple[list[str], list[str]]:
    """No Finding follows the other labels; a hedged clinical finding makes it uncertain too."""
    if any(name not in (NO_FINDING, SUPPORT_DEVICES) for name in uncertain):
        kept = [name for name in positives if name != NO_FINDING]
        return kept, sorted(set(uncertain) | {NO_FINDING}, key=FINDINGS.index)
    return with_no_finding(positives), [name for name in uncertain if name != NO_FINDING]


def apply_uncertain_policy(samples: Iterable[Sample], policy: str | None) -> None:
    """positive/negative resolve uncertain findings here; ignore (or None) leaves them in
    meta["uncertain"] for the engine to mask."""
    if policy in (None, "ignore"):
        return
    for sample in samples:
        uncertain = sample.meta.get("uncertain", {}).get(FINDINGS_TASK, [])
        if policy == "positive" and uncertain:
            merged = set(sample.labels.get(FINDINGS_TASK) or []) | set(uncertain)
            sample.labels[FINDINGS_TASK] = with_no_finding([n for n in FINDINGS if n in merged and n != NO_FINDING])
        elif policy == "negative" and uncertain:
            sample.labels[FINDINGS_TASK] = with_no_finding(list(sample.labels.get(FINDINGS_TASK) or []))
        sample.meta.setdefault("uncertain", {})[FINDINGS_TASK] = []


def _manifest_findings(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    raw = row.get("findings", [])
    if isinstance(raw, dict):  # {label: 1 | 0 | -1}
        values = {}
        for name, value in raw.items():
            if value not in (1, 0, -1):
                raise _Row("findings", f"{name}: {value!r} is not 1, 0 or -1")
            values[_finding(name)] = value
        return labels_to_targets(values)
    if not isinstance(raw, list):
        raise _Row("findings", "must be a list of finding names or an object {name: 1|0|-1}")
    uncertain = row.get("uncertain", [])
    if not isinstance(uncertain, list):
        raise _Row("uncertain", "must be a list of finding names")
    return [_finding(n) for n in raw], [_finding(n) for n in uncertain]


def _finding(name: Any) -> str:
    found = canonical_finding(str(name))
    if found is None:
        raise _Row("findings", f"unknown finding {name!r}; known: {', '.join(FINDINGS)}")
    return found


def _joined(texts: Iterable[str | None]) -> str | None:
    """A study's text from its lines: each distinct one once (a PACS export repeats the
    study's report on every image's line)."""
    distinct = list(dict.fromkeys(text for text in texts if text))
    return "\n\n".join(distinct) or None


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise _Row(key, "must be a string")
    return value


def _chexpert_image(csv_path: Path, relative: str) -> Path:
    """CheXpert paths start with the data set folder's name: try beside and above the CSV."""
    for base in (csv_path.parent, csv_path.parent.parent):
        candidate = base / relative
        if candidate.is_file():
            return candidate
    return csv_path.parent / relative


def _open_table(path: Path) -> list[dict[str, str]]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))


def _mimic_label_table(root: Path) -> dict[str, dict[str, int]]:
    """study_id -> {finding: 1/0/-1} from mimic-cxr-*-chexpert.csv(.gz), when present."""
    files = sorted(root.glob("*chexpert.csv*")) + sorted(root.glob("*negbio.csv*"))
    table: dict[str, dict[str, int]] = {}
    for row in _open_table(files[0]) if files else []:
        labels = {name: int(float(row[name])) for name in FINDINGS if (row.get(name) or "").strip()}
        table[str(row["study_id"]).strip()] = labels
    return table


def _mimic_view_table(root: Path) -> dict[str, str]:
    """dicom_id -> ViewPosition from mimic-cxr-*-metadata.csv(.gz), when present."""
    files = sorted(root.glob("*metadata.csv*"))
    return {row["dicom_id"]: (row.get("ViewPosition") or "").upper() for row in _open_table(files[0])} if files else {}


def _media_type(path: Path) -> str | None:
    return {".dcm": "application/dicom", ".dicom": "application/dicom", ".png": "image/png",
            ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(path.suffix.lower())
