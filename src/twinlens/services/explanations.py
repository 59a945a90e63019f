"""Explanations of job results: when a worker computes one, storing it with the result,
and reading it back (`GET /v1/jobs/{id}/explanation`, the heatmap overlay PNG).

When: every job `decide()` marks `needs_review` (a reviewer is going to ask why), every
job whose request said `?explain=true`, and every job when `TWINLENS_EXPLAIN=all`;
`TWINLENS_EXPLAIN=requested` keeps only the asked-for ones (the cost is a few backward
passes per job; see benchmarks/explanations.py). The engine computes them
(engine/explain.py); a failure to explain never fails the job.
"""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from twinlens.blobs import BlobNotFound, BlobStore
from twinlens.contract.registry import get_plugin
from twinlens.db.availability import database_unavailable
from twinlens.db.explanation_tables import JobExplanation
from twinlens.db.models import Job
from twinlens.db.repositories.explanations import ExplanationRepository
from twinlens.services import jobs
from twinlens.services.job_images import StoredImage, stored_images
from twinlens.services.errors import NotFound
from twinlens.services.keys import Principal
from twinlens.services.views import ExplanationView, explanation_view

log = logging.getLogger(__name__)
# The overlay is drawn at most this many pixels on its longer side.
OVERLAY_MAX_SIDE = 768
# How strongly the hottest cells tint the image (0..255 alpha at heat 255).
OVERLAY_ALPHA = 0.6
HEAT_COLOUR = (255, 48, 0)


@dataclass(frozen=True)
class ComputedExplanation:
    """What a worker computed for one job, ready to store with its result."""

    reason: str
    model_version: str
    details: dict[str, Any]
    heatmaps: dict[str, bytes] = field(default_factory=dict)  # head -> grayscale PNG
    duration_ms: int = 0


def reason_to_explain(policy: str, requested: bool, decision: dict[str, Any]) -> str | None:
    """Why this job gets an explanation under `policy` (TWINLENS_EXPLAIN), or None."""
    if requested:
        return "requested"
    if policy == "all":
        return "setting"
    if policy == "review" and decision.get("needs_review"):
        return "needs_review"
    return None


def store(session: Session, job_id: uuid.UUID, computed: ComputedExplanation | None) -> None:
    """Write the explanation in the result's transaction (call once the result is written)."""
    if computed is None:
        return
    job = session.get(Job, job_id)
    if job is None:
        return
    row = JobExplanation(job_id=job.id, tenant_id=job.tenant_id, model_version=computed.model_version,
                         reason=computed.reason, details=computed.details, duration_ms=computed.duration_ms)
    try:
        with session.begin_nested():  # an explanation that cannot be stored must not cost the result
            ExplanationRepository(session).add(row, computed.heatmaps)
    except SQLAlchemyError as exc:
        if database_unavailable(exc):
            raise
        log.warning("storing the explanation of job %s failed: %s", job_id, exc.__class__.__name__)


def forget_job(session: Session, job_id: uuid.UUID) -> None:
    """The explanation quotes the job's words and maps its image: it goes with the inputs."""
    ExplanationRepository(session).delete_for_job(job_id)


def get_explanation(session: Session, principal: Principal, job_id: uuid.UUID) -> ExplanationView:
    job = jobs.get_job(session, principal, job_id)  # 404 for another tenant's job
    row = ExplanationRepository(session).for_tenant(job.id, principal.tenant_id)
    if row is None:
        raise NotFound(_missing(job))
    return explanation_view(row)


def heatmap_overlay(session: Session, blobs: BlobStore, principal: Principal, job_id: uuid.UUID, head: str,
                    image: str | None = None) -> bytes:
    """The head's heatmap drawn over the job's stored input image, as PNG bytes; for a job
    of several images, `image` (a view, or "image N") picks whose heatmap over which image
    (none: the image that mattered most)."""
    job = jobs.get_job(session, principal, job_id)
    repo = ExplanationRepository(session)
    row = repo.for_tenant(job.id, principal.tenant_id)
    if row is None:
        raise NotFound(_missing(job))
    image = image or _most_telling_image(job, row.details, head)
    heat = repo.heatmap(job.id, head if image is None else f"{head}{IMAGE_HEATMAP_SEPARATOR}{image}")
    if heat is None:
        with_heatmaps = sorted(name for name, value in (row.details.get("heads") or {}).items() if value.get("heatmap"))
        images = sorted({name for value in (row.details.get("heads") or {}).values() for name in value.get("image_heatmaps", {})})
        shown = f"; images with one: {', '.join(images)}" if images else ""
        raise NotFound(f"job {job_id} has no heatmap for head {head!r}{f' and image {image!r}' if image else ''}; "
                       f"heads with one: {', '.join(with_heatmaps) or 'none'}{shown}", head=head)
    stored = _stored_image(job, image)
    if stored is None:
        raise NotFound(f"job {job_id}'s input image is no longer stored")
    try:
        data = blobs.get(stored.sha256)
    except BlobNotFound:
        raise NotFound(f"job {job_id}'s input image is no longer stored") from None
    picture = get_plugin(job.plugin).load_image(data, stored.media_type)
    return overlay_png(picture, heat)


# engine/explain.py stores one image's heatmap of a head as "head@image".
IMAGE_HEATMAP_SEPARATOR = "@"


def _most_telling_image(job: Any, details: dict[str, Any], head: str) -> str | None:
    """Of a job of several images, the one whose removal moved the answer most."""
    per_image = ((details.get("heads") or {}).get(head) or {}).get("image_heatmaps") or {}
    if not per_image:
        return None
    shares = (job.result.explanation or {}).get("image_contributions", {}) if job.result is not None else {}
    return max(per_image, key=lambda name: shares.get(name, 0.0))


def _stored_image(job: Any, name: str | None) -> StoredImage | None:
    """The stored image a heatmap name means: its view, or "image N" (from 1)."""
    images = stored_images(job.input_blob, job.input_media_type, job.meta) if job.inputs_purged_at is None else []
    if name is None or not images:
        return images[0] if images else None
    for position, image in enumerate(images, 1):
        if name in (image.view, f"image {position}"):
            return image
    return None


def overlay_png(image: Any, heat_png: bytes) -> bytes:
    """Tint the image where the heat is (the grid stretched over the whole image, as the
    encoder saw it: inputs are resized to its square)."""
    from PIL import Image

    base = image.convert("RGB")
    base.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
    heat = Image.open(io.BytesIO(heat_png)).convert("L").resize(base.size, Image.BILINEAR)
    alpha = heat.point(lambda value: int(value * OVERLAY_ALPHA))
    tinted = Image.composite(Image.new("RGB", base.size, HEAT_COLOUR), base, alpha)
    buffer = io.BytesIO()
    tinted.save(buffer, format="PNG")
    return buffer.getvalue()


def _missing(job: Job) -> str:
    if job.status != "succeeded":
        return f"job {job.id} is {job.status}; only a finished job can have an explanation"
    if job.inputs_purged_at is not None:
        return f"job {job.id}'s inputs were purged, and its explanation with them"
    return (f"job {job.id} has no explanation: it did not need review and did not ask for one "
            "(submit with ?explain=true, or set TWINLENS_EXPLAIN=all)")
