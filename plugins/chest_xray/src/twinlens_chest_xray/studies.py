"""Which manifest lines are one study. A PACS export writes one line per image, so the
frontal and the lateral view of a study arrive as two lines: lines that name the same
`study_id`, or whose single DICOM image carries the same StudyInstanceUID, are one case.
Every other line is a case of its own (a line may also list a study's images itself)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO

import pydicom

from twinlens.contract.errors import InputError
from twinlens.contract.manifest import image_entries

DICOM_SUFFIXES = (".dcm", ".dicom")
Line = tuple[int, str]  # (line number, the line's text)


def group_lines(root: Path, lines: list[Line]) -> list[list[Line]]:
    """`lines` in groups, one per study, in the order each study first appears."""
    groups: list[list[Line]] = []
    by_study: dict[str, list[Line]] = {}
    for line in lines:
        study = _study_of(root, line[1])
        if study is None:
            groups.append([line])
        elif study in by_study:
            by_study[study].append(line)
        else:
            by_study[study] = [line]
            groups.append(by_study[study])
    return groups


def study_uid(path: Path) -> str | None:
    """The StudyInstanceUID in a DICOM file's header, None for any other file."""
    if path.suffix.lower() not in DICOM_SUFFIXES or not path.is_file():
        return None
    with path.open("rb") as handle:
        return header_study_uid(handle)


def header_study_uid(source: BinaryIO) -> str | None:
    """The StudyInstanceUID of DICOM data (its pixels unread); None without one."""
    try:
        header = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=["StudyInstanceUID"], force=True)
    except Exception:  # unreadable data is reported by its own reading, with its reason
        return None
    return str(header.get("StudyInstanceUID") or "").strip() or None


def require_one_study(images: list[tuple[bytes, bool]]) -> None:
    """Refuse (image bytes, is DICOM) uploads of one job whose DICOM headers name different
    studies: a job is one study, and two patients' views in one would be read as one case."""
    uids = {header_study_uid(io.BytesIO(data)) for data, dicom in images if dicom} - {None}
    if len(uids) > 1:
        raise InputError("image", f"the images belong to {len(uids)} different studies (StudyInstanceUID); "
                                  "send each study as its own job")


def _study_of(root: Path, text: str) -> str | None:
    try:
        row = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(row, dict):
        return None
    if row.get("study_id") not in (None, ""):
        return f"id:{row['study_id']}"
    entries = image_entries(row["image"]) if row.get("image") else None
    if not entries or len(entries) != 1:
        return None
    uid = study_uid(root / entries[0][0])
    return f"uid:{uid}" if uid else None
