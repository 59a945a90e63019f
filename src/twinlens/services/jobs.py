"""Jobs as the API sees them: submit, read, list, cancel, delete, feedback."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import RawInput
from twinlens.contract.schema import LabelSchema, Task
from twinlens.db.base import utcnow
from twinlens.db.models import Feedback, Job
from twinlens.db.repositories import AuditRepository, JobRepository
from twinlens.db.repositories.connectors import ConnectorRepository
from twinlens.db.session import after_commit
from twinlens.queue import publish_predict
from twinlens.services import drift
from twinlens.services import case_embeddings
from twinlens.services.errors import Conflict, NotFound, Unprocessable
from twinlens.services.job_images import job_blobs, store_images
from twinlens.services.keys import Principal
from twinlens.services.models import model_for_new_job
from twinlens.services.paging import PageRequest, next_cursor


@dataclass
class Submission:
    job: Job
    created: bool  # False: an earlier job answered this Idempotency-Key


@dataclass(frozen=True)
class JobRequest:
    plugin: str
    raw: RawInput
    webhook_url: str | None
    idempotency_key: str | None
    fingerprint: str
    # services/erasure.subject_digest of the caller's metadata.subject_ref, if it named one.
    subject_digest: str | None = None
    explain: bool = False  # ?explain=true: explain the result whatever the decision
    zero_shot: bool = True  # the zero_shot setting: may a plugin without a model answer zero-shot


def submit_job(session: Session, blobs: BlobStore, principal: Principal, request: JobRequest) -> Submission:
    """Store the inputs and a queued job; publish its id once the caller commits."""
    if request.idempotency_key:
        earlier = replay_idempotent(session, principal, request)
        if earlier is not None:
            return Submission(earlier, created=False)
    model = model_for_new_job(session, principal.tenant_id, request.plugin, zero_shot=request.zero_shot)
    raw = request.raw
    images, metadata = store_images(blobs, raw)
    job = JobRepository(session).add(
        Job(
            tenant_id=principal.tenant_id,
            plugin=request.plugin,
            model_version_id=model.id,
            # Both set now, so rendering the new job (job_view) loads neither from the database.
            model_version=model,
            result=None,
            status="queued",
            input_blob=images[0].sha256 if images else None,
            input_media_type=images[0].media_type if images else None,
            texts=raw.texts,
            meta=metadata,
            webhook_url=request.webhook_url,
            idempotency_key=request.idempotency_key,
            request_hash=request.fingerprint,
            subject_digest=request.subject_digest,
            explain=request.explain,
        )
    )
    job_id, plugin = job.id, job.plugin
    after_commit(session, lambda: publish_predict(job_id, plugin))
    return Submission(job, created=True)


def replay_idempotent(session: Session, principal: Principal, request: JobRequest) -> Job | None:
    """The job an Idempotency-Key already made, or None; a different request is a 422."""
    assert request.idempotency_key
    earlier = JobRepository(session).by_idempotency_key(principal.tenant_id, request.idempotency_key)
    if earlier is not None and earlier.request_hash != request.fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request",
            idempotency_key=request.idempotency_key,
            job_id=str(earlier.id),
        )
    return earlier


def get_job(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    job = JobRepository(session).get_for_tenant(job_id, principal.tenant_id)
    if job is None:  # another tenant's job is indistinguishable from no job
        raise NotFound(f"no job {job_id}")
    return job


def job_status(session: Session, principal: Principal, job_id: uuid.UUID) -> str:
    return get_job(session, principal, job_id).status


def list_jobs(
    session: Session, principal: Principal, page: PageRequest, *, plugin: str | None = None, status: str | None = None,
) -> tuple[list[Job], str | None]:
    """One page of the tenant's jobs, newest first, and the cursor of the next page."""
    result = JobRepository(session).page(principal.tenant_id, limit=page.limit, plugin=plugin, status=status, after=page.after)
    return result.rows, next_cursor(result)


def cancel_job(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    job = get_job(session, principal, job_id)
    if not JobRepository(session).cancel(job.id, utcnow()):
        raise Conflict(f"job {job_id} is {job.status}; only queued jobs can be canceled", job_status=job.status)
    session.refresh(job)
    return job


def delete_job(session: Session, blobs: BlobStore, principal: Principal, job_id: uuid.UUID) -> None:
    """Delete a job with its result, feedback and deliveries, and purge its inputs now."""
    job = get_job(session, principal, job_id)
    repo = JobRepository(session)
    unshared = sorted(blob for blob in job_blobs(job) if not repo.blob_referenced_elsewhere(blob, job.id))
    case_embeddings.forget_indexes(session, job.tenant_id, job.model_version_id)  # its vectors go by cascade; index files too
    ConnectorRepository(session).forget_job_copies(job.id, "(removed with the job)")  # its helpdesk call log
    repo.delete(job)
    AuditRepository(session).record(
        "job.delete", tenant_id=principal.tenant_id, api_key_id=principal.key_id, target=f"job:{job_id}"
    )
    if unshared:
        # Only once the deletion is durable: a rolled-back delete must keep its inputs.
        after_commit(session, lambda: [blobs.delete(blob) for blob in unshared])


def add_feedback(
    session: Session,
    principal: Principal,
    job_id: uuid.UUID,
    labels: dict[str, Any],
    *,
    comment: str | None = None,
    author: str | None = None,
) -> Feedback:
    """Store a correction; labels must name the model's tasks and labels."""
    job = get_job(session, principal, job_id)
    if not labels and not comment:
        raise InputError("labels", "give corrected labels, a comment, or both")
    schema = LabelSchema.model_validate(job.model_version.label_schema)
    for task_name, value in labels.items():
        _check_label(schema, task_name, value)
    feedback = JobRepository(session).add_feedback(
        Feedback(job_id=job.id, tenant_id=principal.tenant_id, labels=labels, comment=comment, author=author, api_key_id=principal.key_id)
    )
    drift.observe_correction(job.plugin, job.model_version.version, labels)
    return feedback


def list_feedback(session: Session, principal: Principal, job_id: uuid.UUID) -> list[Feedback]:
    job = get_job(session, principal, job_id)
    return JobRepository(session).feedback_for(job.id)


def _check_label(schema: LabelSchema, task_name: str, value: Any) -> None:
    field = f"labels.{task_name}"
    try:
        task = schema.task(task_name)
    except KeyError:
        raise InputError(field, f"no such task; the model has: {', '.join(schema.task_names)}") from None
    if task.kind == "regression":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(field, "a regression task takes a number")
        return
    values = [value] if task.kind == "multiclass" else value
    if task.kind == "multiclass" and not isinstance(value, str):
        raise InputError(field, "a multiclass task takes one label name")
    if task.kind == "multilabel" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise InputError(field, "a multilabel task takes a list of label names")
    _check_names(task, values, field)


def _check_names(task: Task, values: list[str], field: str) -> None:
    unknown = [v for v in values if v not in task.label_names]
    if unknown:
        raise InputError(field, f"unknown label(s) {unknown}; known: {task.label_names}")
