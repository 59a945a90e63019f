"""Corrections become a data set: each corrected job's stored inputs (image blob, texts,
metadata) and the labels its reviewers gave, written in the plugin's own format
(`Plugin.export_row`, `Plugin.export_file_name`) so `read_dataset` reads it back.

Each row also carries, under `correction`, the original prediction, the model version
that made it and the feedback it came from. Jobs whose inputs retention (or a deletion)
purged are counted and skipped; jobs reserved for the holdout are left out of training
exports. The data set is written into a temporary folder beside the target and renamed
at the end, so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from twinlens.blobs import BlobNotFound, BlobStore
from twinlens.contract.errors import InputError
from twinlens.contract.json_values import json_safe
from twinlens.contract.plugin import ExportedExample, Plugin, RawInput
from twinlens.contract.registry import get_plugin
from twinlens.db.models import Feedback, Job
from twinlens.db.repositories.learning import LearningRepository
from twinlens.services import job_images

IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "application/dicom": ".dcm"}


@dataclass(frozen=True)
class Correction:
    """A corrected job: its inputs as stored and the labels reviewers gave (the newest
    feedback wins per task; comment-only feedback gives none)."""

    job: Job
    labels: dict[str, Any]
    feedback: list[Feedback]

    @property
    def purged(self) -> bool:
        return self.job.inputs_purged_at is not None or (self.job.input_blob is None and not self.job.texts)

    def predicted(self) -> dict[str, Any]:
        heads = self.job.result.heads if self.job.result is not None else {}
        return {name: _top(head) for name, head in (heads or {}).items()}

    def raw_input(self, blobs: BlobStore) -> RawInput:
        """Every stored image with the texts and the caller's metadata; raises BlobNotFound
        when an image is gone."""
        stored = job_images.stored_images(self.job.input_blob, self.job.input_media_type, self.job.meta)
        return job_images.raw_input([(blobs.get(image.sha256), image) for image in stored], dict(self.job.texts or {}),
                                    self.job.meta or {})


def _top(head: dict[str, Any]) -> Any:
    if head.get("label") is not None:
        return head["label"]
    if head.get("value") is not None:
        return head["value"]
    return head.get("labels")


def merged_labels(feedback: list[Feedback]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for row in feedback:  # oldest first: a later correction of a task replaces an earlier one
        labels.update(row.labels or {})
    return labels


def corrections(session: Session, tenant_id: uuid.UUID, plugin: str, since: datetime | None = None,
                until: datetime | None = None) -> list[Correction]:
    rows = LearningRepository(session).corrected_jobs(tenant_id, plugin, since, until)
    return [Correction(job, merged_labels(feedback), feedback) for job, feedback in rows]


def reserved_for_holdout(job_id: uuid.UUID, fraction: float) -> bool:
    """Whether a corrected job falls in the automatically reserved holdout slice: a fixed
    function of its id, so a job never moves between training and holdout."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"holdout:{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass
class ExportSummary:
    path: str | None  # the data set file read_dataset takes; None when nothing was exported
    rows: int = 0
    skipped_purged: int = 0  # inputs gone (retention, a deleted image)
    skipped_no_labels: int = 0  # feedback with a comment only
    skipped_held_out: int = 0  # reserved for the holdout: never trained on
    job_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_corrections(
    session: Session, blobs: BlobStore, *, tenant_id: uuid.UUID, plugin_name: str, out_dir: Path,
    since: datetime | None = None, exclude: Collection[uuid.UUID] = (), exclude_fraction: float = 0.0,
) -> ExportSummary:
    """Write the corrected jobs of a tenant and plugin into `out_dir` (a new or empty
    folder): the data set file plus images/. `exclude` and the `exclude_fraction` slice
    (reserved_for_holdout) are left out and counted."""
    plugin = get_plugin(plugin_name)
    out_dir = Path(out_dir)
    _check_target(out_dir)
    summary = ExportSummary(path=None)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    except OSError as exc:
        raise InputError("output_dir", f"cannot write beside {out_dir}: {exc.strerror or exc.__class__.__name__}") from None
    try:
        lines = []
        for item in corrections(session, tenant_id, plugin_name, since):
            row = _row(plugin, item, blobs, staging, summary, exclude, exclude_fraction)
            if row is not None:
                lines.append(json.dumps(json_safe(row), ensure_ascii=False))
                summary.job_ids.append(str(item.job.id))
        (staging / plugin.export_file_name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        summary.rows = len(lines)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above): replaced by the finished export
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.path = str(out_dir / plugin.export_file_name)
    return summary


def _check_target(out_dir: Path) -> None:
    try:
        taken = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    except OSError as exc:
        raise InputError("output_dir", f"cannot read {out_dir}: {exc.strerror or exc.__class__.__name__}") from None
    if taken:
        raise InputError("output_dir", f"{out_dir} exists and is not an empty folder; give a new one")


def _row(plugin: Plugin, item: Correction, blobs: BlobStore, staging: Path, summary: ExportSummary,
         exclude: Collection[uuid.UUID], exclude_fraction: float) -> dict[str, Any] | None:
    if not item.labels:
        summary.skipped_no_labels += 1
        return None
    # Purged before held out: every job whose inputs are gone is counted as such, whichever
    # slice its id falls in (the holdout never had its inputs either).
    if item.purged:
        summary.skipped_purged += 1
        return None
    if item.job.id in exclude or reserved_for_holdout(item.job.id, exclude_fraction):
        summary.skipped_held_out += 1
        return None
    try:
        raw = item.raw_input(blobs)
    except BlobNotFound:
        summary.skipped_purged += 1
        return None
    image_path = _write_image(staging, item.job, raw.image_bytes) if raw.image_bytes else None
    example = ExportedExample(id=str(item.job.id), image_path=image_path, texts=raw.texts, metadata=raw.metadata,
                              labels=item.labels)
    return {**plugin.export_row(example), "correction": _provenance(item)}


def _write_image(staging: Path, job: Job, data: bytes) -> str:
    suffix = IMAGE_SUFFIXES.get(job.input_media_type or "", ".png")
    relative = f"images/{job.input_blob}{suffix}"
    target = staging / relative
    target.parent.mkdir(exist_ok=True)
    if not target.exists():  # content-addressed: two jobs with one image share the file
        target.write_bytes(data)
    return relative


def _provenance(item: Correction) -> dict[str, Any]:
    return {
        "job_id": str(item.job.id),
        "model_version": item.job.result.model_version if item.job.result is not None else item.job.model_version.version,
        "predicted": item.predicted(),
        "corrected": item.labels,
        "feedback_ids": [str(row.id) for row in item.feedback],
        "corrected_at": item.feedback[-1].created_at.isoformat(),
    }
