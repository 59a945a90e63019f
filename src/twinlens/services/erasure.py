"""Forgetting: every copy of a job's inputs (the retention purge), and erasure of all that
one subject, or one whole tenant, left behind.

A job's inputs are copied beyond the job row: the plugin's preprocessing keeps what it read
(the ticket text, the OCR text of the photo, product details) in the prediction's extras,
`decide` may quote some of it in the decision, and the webhook payload carries the job's
metadata and result. Purging the inputs clears all of these and keeps what the model made
(labels, scores, the model version), so a result stays useful after its inputs are gone.

Subjects: a job may name who it is about with `metadata.subject_ref` (a customer or case
number of the caller's). The job row keeps a digest of it, which outlives the retention
purge of the metadata, so an erasure request for that subject still finds the job's result
and feedback. `DELETE /v1/subjects/{subject_ref}` erases them in the caller's tenant only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.contract.errors import InputError, PluginError, UnknownPluginError
from twinlens.contract.plugin import Plugin
from twinlens.contract.registry import get_plugin
from twinlens.db.models import Job, Result
from twinlens.db.repositories import AuditRepository, JobRepository, TenantRepository, WebhookRepository
from twinlens.db.repositories.batches import BatchRepository
from twinlens.db.repositories.erasure import ErasureRepository
from twinlens.db.repositories.connectors import ConnectorRepository
from twinlens.db.repositories.learning import LearningRepository
from twinlens.db.session import after_commit
from twinlens.services import case_embeddings, explanations
from twinlens.services.errors import NotFound
from twinlens.services.job_images import IMAGES_KEY, caller_metadata, job_blobs, listed_blobs
from twinlens.services.keys import Principal
from twinlens.services.webhooks import event_data

log = logging.getLogger(__name__)

SUBJECT_REF_KEY = "subject_ref"
MAX_SUBJECT_REF_CHARS = 200
# Printable text: a reference has to fit in a URL path (DELETE /v1/subjects/...) and a log
# shipper's line, and a control character in an identifier is a mistake, not a name.
SUBJECT_REF_PATTERN = r"^[^\x00-\x1f\x7f]+$"
# What a job's error reason becomes when it quoted the inputs.
PURGED_REASON = "(removed with the job's inputs)"
# An input string this long is searched for inside longer strings too; a shorter one only
# as a whole string: "high" or "smoke" inside a sentence is a word, not a copy of an input.
CONTAINED_COPY_CHARS = 8
# A stored string this long that is part of an input is an excerpt of it.
EXCERPT_CHARS = 24


# -- subject references -------------------------------------------------------------------
def subject_digest(tenant_id: uuid.UUID, subject_ref: str) -> str:
    """The job row keeps this, not the reference: the same reference in two tenants gives
    two digests, and the row alone does not say whom it is about."""
    return hashlib.sha256(f"{tenant_id}:{subject_ref}".encode()).hexdigest()


def check_subject_ref(value: Any, field: str) -> str:
    """A subject reference as given (it is matched exactly); InputError naming `field`."""
    if not isinstance(value, str):
        raise InputError(field, "a subject reference is a string (your own customer or case number)")
    if not value.strip():
        raise InputError(field, "a subject reference may not be empty")
    if len(value) > MAX_SUBJECT_REF_CHARS:
        raise InputError(field, f"longer than {MAX_SUBJECT_REF_CHARS} characters")
    if not re.match(SUBJECT_REF_PATTERN, value):
        raise InputError(field, "may not hold control characters (line breaks, tabs, NUL)")
    return value


def subject_digest_of(tenant_id: uuid.UUID, metadata: dict[str, Any]) -> str | None:
    """The digest of a job's `metadata.subject_ref`, None when it names no subject."""
    if metadata.get(SUBJECT_REF_KEY) is None:
        return None
    return subject_digest(tenant_id, check_subject_ref(metadata[SUBJECT_REF_KEY], f"metadata.{SUBJECT_REF_KEY}"))


# -- every copy of one job's inputs -------------------------------------------------------
@dataclass(frozen=True)
class InputCopies:
    """Recognises strings stored elsewhere that copy a job's inputs."""

    inputs: frozenset[str]  # the job's input strings and what preprocessing read, normalised
    vocabulary: frozenset[str]  # the model's and plugin's own words: never a copy

    def found_in(self, text: str) -> bool:
        value = _normalised(text)
        if not value or value in self.vocabulary:
            return False
        return any(
            value == copied
            or (len(copied) >= CONTAINED_COPY_CHARS and copied in value)
            or (len(value) >= EXCERPT_CHARS and value in copied)
            for copied in self.inputs
        )


def forget_job_inputs(session: Session, blobs: BlobStore, job: Job, now: datetime) -> None:
    """Clear the job's inputs and every copy of them: the texts, metadata and image (its
    blob once no other job uses it), what the result quotes of them, a failed job's reason
    that quotes them, and the job as its webhook deliveries carry it."""
    plugin = _plugin_or_none(job.plugin)
    copies = input_copies(job, plugin)
    repo = JobRepository(session)
    unshared = sorted(blob for blob in job_blobs(job) if not repo.blob_referenced_elsewhere(blob, job.id))
    if unshared:
        after_commit(session, lambda: [blobs.delete(blob) for blob in unshared])
    job.input_blob = None
    job.texts = None
    job.meta = {}
    if job.error:
        job.error = scrub(job.error, copies, PURGED_REASON)
    if job.result is not None:
        _forget_in_result(job.result, copies, plugin.decision_model() if plugin is not None else None)
    job.inputs_purged_at = now
    case_embeddings.forget_job(session, job)  # its vectors, and the index files holding copies
    explanations.forget_job(session, job.id)  # its words and where its image shows evidence
    for shadow in LearningRepository(session).shadow_results_of_job(job.id):  # a challenger's decision on it
        shadow.decision = _scrubbed_decision(shadow.decision or {}, copies, plugin.decision_model() if plugin is not None else None)
    for delivery in WebhookRepository(session).for_job(job.id):
        # The event as it would be sent now: the same job, less its inputs.
        delivery.payload = {**delivery.payload, "data": event_data(job)}
    ConnectorRepository(session).forget_job_copies(job.id, PURGED_REASON)  # a helpdesk ticket's call log


def input_copies(job: Job, plugin: Plugin | None) -> InputCopies:
    extras = (job.result.explanation or {}).get("extras", {}) if job.result is not None else {}
    vocabulary = _vocabulary(job, plugin)
    found = {_normalised(text) for text in _strings_in([job.texts or {}, caller_metadata(job.meta), extras])}
    return InputCopies(inputs=frozenset(found - vocabulary - {""}), vocabulary=vocabulary)


def scrub(value: Any, copies: InputCopies, replacement: Any) -> Any:
    """`value` with every string that copies an input replaced (in a list: dropped)."""
    if isinstance(value, str):
        return replacement if copies.found_in(value) else value
    if isinstance(value, dict):
        return {key: scrub(item, copies, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, copies, replacement) for item in value if not (isinstance(item, str) and copies.found_in(item))]
    return value


def _forget_in_result(result: Result, copies: InputCopies, decision_model: type[BaseModel] | None) -> None:
    # Extras are, by the plugin contract, what preprocessing found in the inputs: all go.
    explanation = {key: scrub(value, copies, None) for key, value in (result.explanation or {}).items() if key != "extras"}
    result.explanation = {**explanation, "extras": {}}
    result.decision = _scrubbed_decision(result.decision or {}, copies, decision_model)


def _scrubbed_decision(decision: dict[str, Any], copies: InputCopies, model: type[BaseModel] | None) -> dict[str, Any]:
    """Copies become null; where the plugin's decision model wants a string there, an empty
    one, so a typed client still reads the purged decision."""
    scrubbed = scrub(decision, copies, None)
    if model is None or _fits(model, scrubbed) or not _fits(model, decision):
        return scrubbed
    return scrub(decision, copies, "")


def _fits(model: type[BaseModel], decision: dict[str, Any]) -> bool:
    try:
        model.model_validate(decision)
    except ValidationError:
        return False
    return True


def _vocabulary(job: Job, plugin: Plugin | None) -> frozenset[str]:
    """Task and label names, input field names and declared metadata choices: stored
    strings equal to one of them are the schema's words, whatever a caller sent."""
    words: set[str] = {"image"}
    for task in (job.model_version.label_schema or {}).get("tasks", []):
        words.add(task["name"])
        words.update(label["name"] for label in task.get("labels", []))
    if plugin is not None:
        schema = plugin.input_schema()
        words.update(field.name for field in schema.texts)
        for field in schema.metadata:
            words.add(field.name)
            words.update(field.choices)
    return frozenset(_normalised(word) for word in words)


def _strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings_in(item)


def _normalised(text: str) -> str:
    # Plugins collapse whitespace and may change case when they copy a text (clean_text).
    return " ".join(text.casefold().split())


def _plugin_or_none(name: str) -> Plugin | None:
    try:
        return get_plugin(name)
    except (UnknownPluginError, PluginError):  # uninstalled since: purge what can be told
        log.warning("plugin %s is not installed; purging job inputs without its schema", name)
        return None


# -- erasure of a subject or a tenant -----------------------------------------------------
@dataclass(frozen=True)
class ErasureCounts:
    """What an erasure removed."""

    jobs: int = 0
    results: int = 0
    feedback: int = 0
    webhook_deliveries: int = 0
    blobs: int = 0
    embeddings: int = 0  # case vectors of similar-case search (services/case_embeddings.py)
    batch_rows: int = 0  # lines of bulk scoring batches (services/batches.py) that named the subject
    # A whole tenant's deletion only:
    api_keys: int = 0
    model_versions: int = 0
    training_runs: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def of_jobs(self) -> dict[str, int]:
        """The counts a subject's erasure has (it deletes no keys, models or runs)."""
        return {name: getattr(self, name) for name in ("jobs", "results", "feedback", "webhook_deliveries", "blobs", "embeddings",
                                                     "batch_rows")}


def erase_subject(session: Session, blobs: BlobStore, principal: Principal, subject_ref: str) -> ErasureCounts:
    """Delete every job of this subject in the caller's tenant (tenant admins), with its
    result, feedback, webhook deliveries and image. Another tenant's subject of the same
    reference is another digest, so it is never reached."""
    principal.require_admin()
    digest = subject_digest(principal.tenant_id, check_subject_ref(subject_ref, SUBJECT_REF_KEY))
    repo = ErasureRepository(session)
    counts = repo.job_counts(principal.tenant_id, digest)
    used = repo.job_blobs(principal.tenant_id, digest) | listed_blobs(repo.metadata_containing(IMAGES_KEY, principal.tenant_id, digest))
    case_embeddings.forget_indexes(session, principal.tenant_id)  # index files hold copies of the vectors
    repo.delete_jobs(principal.tenant_id, digest)
    batch_rows = BatchRepository(session).delete_subject_rows(principal.tenant_id, digest)
    erased = ErasureCounts(**counts, blobs=_delete_unused_blobs(session, blobs, used), batch_rows=batch_rows)
    # The digest, not the reference: the audit log must not keep who was erased in clear.
    AuditRepository(session).record(
        "subject.erase", tenant_id=principal.tenant_id, api_key_id=principal.key_id,
        target=f"subject:{digest}", details=erased.of_jobs(),
    )
    return erased


def delete_tenant(session: Session, blobs: BlobStore, name: str) -> ErasureCounts:
    """Delete a tenant with everything it owns (the operator's command: no API key can)."""
    tenant = TenantRepository(session).by_name(name)
    if tenant is None:
        raise NotFound(f"no tenant {name!r}")
    repo = ErasureRepository(session)
    counts = {**repo.job_counts(tenant.id), **repo.tenant_counts(tenant.id), "batches": BatchRepository(session).batches_count(tenant.id)}
    used = repo.job_blobs(tenant.id) | listed_blobs(repo.metadata_containing(IMAGES_KEY, tenant.id))
    tenant_id = tenant.id
    case_embeddings.forget_indexes(session, tenant_id)
    repo.delete_tenant(tenant_id)
    session.expunge(tenant)
    erased = ErasureCounts(**counts, blobs=_delete_unused_blobs(session, blobs, used))
    # tenant_id None: the row it would name is gone; the target keeps the id.
    AuditRepository(session).record("tenant.delete", tenant_id=None, target=f"tenant:{tenant_id}",
                                    details={"name": name, **erased.as_dict()})
    return erased


def _delete_unused_blobs(session: Session, blobs: BlobStore, candidates: set[str]) -> int:
    """Delete (once committed) the blobs no remaining job names; how many that is."""
    repo = ErasureRepository(session)
    unused = candidates - repo.blobs_still_used(candidates) - listed_blobs(repo.metadata_containing(IMAGES_KEY))
    if unused:
        after_commit(session, lambda: [blobs.delete(key) for key in sorted(unused)])
    return len(unused)


def audit_purges(session: Session, purged: Iterable[Job], retention_days: float) -> None:
    """One audit event per tenant for a retention sweep: how many jobs lost their inputs."""
    for tenant_id, count in Counter(job.tenant_id for job in purged).items():
        AuditRepository(session).record(
            "retention.purge", tenant_id=tenant_id, details={"jobs": count, "retention_days": retention_days}
        )
