"""The web console's use cases for reviewers: the review queue, a case with everything
known about it, and the review actions (accept, correct, reject, skip, undo).

Corrections are feedback rows written by `jobs.add_feedback`, exactly what
`POST /v1/jobs/{id}/feedback` writes; the console adds only the action log that undo walks
back. Every read goes through the caller's tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from twinlens.blobs import BlobStore
from twinlens.contract.errors import InputError
from twinlens.contract.schema import LabelSchema
from twinlens.db.base import utcnow
from twinlens.db.console_tables import ConsoleReviewAction
from twinlens.db.models import JOB_STATUSES, Feedback, Job, WebhookDelivery
from twinlens.db.repositories import AuditRepository
from twinlens.db.repositories.connectors import ConnectorRepository
from twinlens.db.repositories.console import ConsoleRepository, QueueFilter
from twinlens.services import connectors, explanations, jobs, search, webhooks
from twinlens.services.console_sessions import ConsoleLogin
from twinlens.services.errors import Conflict, NotFound
from twinlens.services.paging import PageRequest
from twinlens.services.views import ExplanationView
from twinlens.settings import Settings

# The queue is ordered in Python (a head's confidence sits in JSON whose shape depends on
# the plugin): it looks at this many of the newest candidates.
QUEUE_WINDOW = 2000
QUEUE_PAGE = 50
HISTORY_SHOWN = 10
SIMILAR_SHOWN = 5
CONNECTOR_EVENTS_SHOWN = 20


# -- the queue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueQuery:
    plugin: str | None = None
    head: str | None = None
    label: str | None = None
    model_version_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None

    def sql_filter(self) -> QueueFilter:
        return QueueFilter(self.plugin, self.model_version_id, self.created_from, self.created_before)


@dataclass(frozen=True)
class QueueItem:
    job_id: uuid.UUID
    plugin: str
    created_at: datetime
    model_version: str
    confidence: float | None
    suggestion: str
    review_reason: str


@dataclass
class QueuePage:
    items: list[QueueItem]
    total: int  # matching cases (within the window)
    window_full: bool  # more candidates exist than the window looked at
    status_counts: dict[str, int]
    awaiting_review: int
    reviewed: int
    skipped_here: int
    plugins: list[str]
    heads: dict[str, list[str]]  # head -> labels seen in the candidates
    model_versions: list[tuple[uuid.UUID, str]]


def review_queue(session: Session, login: ConsoleLogin, query: QueueQuery, *, limit: int = QUEUE_PAGE) -> QueuePage:
    """Cases asking for review that nobody corrected, least confident first; cases this
    session skipped go last (they are still to do, just not next)."""
    repo = ConsoleRepository(session)
    tenant = login.principal.tenant_id
    candidates = repo.review_candidates(tenant, query.sql_filter(), limit=QUEUE_WINDOW + 1)
    window_full = len(candidates) > QUEUE_WINDOW
    candidates = candidates[:QUEUE_WINDOW]
    heads = _heads_seen(candidates)
    matching = [job for job in candidates if _matches_head(job, query.head, query.label)]
    skipped = repo.skipped_in(login.session_id)
    matching.sort(key=lambda job: (job.id in skipped, _confidence_key(job), job.created_at))
    awaiting, reviewed = repo.review_counts(tenant)
    by_status = repo.status_counts(tenant)
    return QueuePage(
        items=[_queue_item(job) for job in matching[:limit]],
        total=len(matching),
        window_full=window_full,
        status_counts={status: by_status.get(status, 0) for status in JOB_STATUSES},
        awaiting_review=awaiting,
        reviewed=reviewed,
        skipped_here=len(skipped & {job.id for job in matching}),
        plugins=sorted({job.plugin for job in candidates}),
        heads=heads,
        model_versions=repo.model_versions_of_jobs(tenant),
    )


def next_case(session: Session, login: ConsoleLogin, query: QueueQuery, *, after: uuid.UUID | None = None) -> uuid.UUID | None:
    """The case to open next: the queue's first, leaving out `after` (just acted on) and
    what this session skipped unless nothing else is left."""
    page = review_queue(session, login, query, limit=QUEUE_WINDOW)
    skipped = ConsoleRepository(session).skipped_in(login.session_id)
    order = [item.job_id for item in page.items if item.job_id != after]
    fresh = [job_id for job_id in order if job_id not in skipped]
    return (fresh or [None])[0]


def review_confidence(heads: dict[str, Any]) -> float | None:
    """How sure the model is of the case: its least sure head. Multiclass: the top label's
    probability; multilabel: the least decided label's max(p, 1 - p); regression: none."""
    values: list[float] = []
    for head in heads.values():
        probabilities = [float(p) for p in (head.get("probabilities") or {}).values()]
        if head.get("kind") == "multiclass":
            confidence = head.get("confidence")
            values.append(float(confidence) if confidence is not None else max(probabilities, default=0.0))
        elif head.get("kind") == "multilabel" and probabilities:
            values.append(min(max(p, 1.0 - p) for p in probabilities))
    return min(values) if values else None


def suggested_labels(heads: dict[str, Any]) -> dict[str, Any]:
    """The model's answer per head, in the shape feedback takes."""
    suggested: dict[str, Any] = {}
    for name, head in heads.items():
        if head.get("kind") == "multiclass" and head.get("label") is not None:
            suggested[name] = head["label"]
        elif head.get("kind") == "multilabel":
            suggested[name] = list(head.get("labels") or [])
        elif head.get("kind") == "regression" and head.get("value") is not None:
            suggested[name] = head["value"]
    return suggested


def _confidence_key(job: Job) -> float:
    confidence = review_confidence(job.result.heads) if job.result else None
    return 2.0 if confidence is None else confidence  # unknown confidence after every known one


def _matches_head(job: Job, head: str | None, label: str | None) -> bool:
    heads = job.result.heads if job.result else {}
    names = [head] if head else list(heads)
    for name in names:
        prediction = heads.get(name)
        if prediction is None:
            continue
        if label is None or prediction.get("label") == label or label in (prediction.get("labels") or []):
            return True
    return False


def _heads_seen(candidates: list[Job]) -> dict[str, list[str]]:
    seen: dict[str, set[str]] = {}
    for job in candidates:
        for name, head in (job.result.heads if job.result else {}).items():
            labels = seen.setdefault(name, set())
            if head.get("label"):
                labels.add(head["label"])
            labels.update(head.get("labels") or [])
    return {name: sorted(labels) for name, labels in sorted(seen.items())}


def _queue_item(job: Job) -> QueueItem:
    result = job.result
    assert result is not None  # candidates are succeeded jobs with a result
    suggestion = ", ".join(f"{name}={_shown(value)}" for name, value in suggested_labels(result.heads).items())
    return QueueItem(job.id, job.plugin, job.created_at, result.model_version, review_confidence(result.heads), suggestion,
                     str(result.decision.get("review_reason") or ""))


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(value) or "none"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# -- one case -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskChoice:
    """One head as the correction form shows it: its labels (1-9 pick the first nine of
    the first head) with the model's probability and suggestion."""

    name: str
    kind: str
    labels: list[tuple[str, float | None]]
    suggested: Any


@dataclass
class CaseHistory:
    deliveries: list[WebhookDelivery]
    feedback: list[Feedback]
    actions: list[ConsoleReviewAction]


@dataclass
class CaseView:
    job: Job
    texts: dict[str, str]
    image_shown: bool  # a browser can show the stored input (PNG, JPEG, WebP)
    has_image: bool
    inputs_purged: bool
    decision: dict[str, Any]
    heads: dict[str, Any]
    contributions: dict[str, float]
    ocr_text: str | None
    intended_use: str | None
    confidence: float | None
    tasks: list[TaskChoice]
    needs_review: bool
    reviewed: bool
    history: CaseHistory
    extras: dict[str, Any] = field(default_factory=dict)


BROWSER_IMAGES = ("image/png", "image/jpeg", "image/webp")


def case_view(session: Session, login: ConsoleLogin, job_id: uuid.UUID, settings: Settings) -> CaseView:
    job = jobs.get_job(session, login.principal, job_id)  # another tenant's job is a 404
    result = job.result
    decision = result.decision if result else {}
    explanation = result.explanation if result else {}
    heads = result.heads if result else {}
    extras = explanation.get("extras") or {}
    feedback = jobs.list_feedback(session, login.principal, job.id)
    return CaseView(
        job=job,
        texts={name: text for name, text in (job.texts or {}).items() if text},
        image_shown=job.input_blob is not None and job.input_media_type in BROWSER_IMAGES,
        has_image=job.input_blob is not None,
        inputs_purged=job.inputs_purged_at is not None,
        decision=decision,
        heads=heads,
        contributions=dict(explanation.get("contributions") or {}),
        ocr_text=decision.get("ocr_text") or extras.get("ocr_text"),
        intended_use=decision.get("intended_use"),
        confidence=review_confidence(heads) if heads else None,
        tasks=_task_choices(job, heads),
        needs_review=bool(decision.get("needs_review")),
        reviewed=bool(feedback),
        history=CaseHistory(
            deliveries=webhooks.deliveries_for_job(session, login.principal, job.id),
            feedback=feedback,
            actions=ConsoleRepository(session).actions_for_job(login.principal.tenant_id, job.id),
        ),
        extras=_case_extras(session, login, job, settings) if job.status == "succeeded" else {},
    )


def _case_extras(session: Session, login: ConsoleLogin, job: Job, settings: Settings) -> dict[str, Any]:
    """What the other services add to a finished case: similar past cases, and the
    explanation of its first head (heatmap, word weights) when the worker made one."""
    extras: dict[str, Any] = {"similar": similar_cases(session, login, job, settings), **_connector_history(session, login, job)}
    try:
        explanation = explanations.get_explanation(session, login.principal, job.id)
    except NotFound:  # the job did not need review and did not ask for one
        return extras
    head = _explained_head(job, explanation)
    if head is None:
        return extras
    explained = explanation.heads[head]
    extras["explained"] = {"head": head, "label": explained.label, "by": explanation.explained_by}
    if explained.heatmap is not None and job.input_media_type in BROWSER_IMAGES and job.inputs_purged_at is None:
        extras["heatmap_head"] = head
    texts = job.texts or {}
    extras["word_weights"] = {name: weighted_tokens(texts[name], [(w.start, w.end, w.weight) for w in words])
                              for name, words in explained.words.items() if texts.get(name) and words}
    return extras


def _connector_history(session: Session, login: ConsoleLogin, job: Job) -> dict[str, Any]:
    """A job a helpdesk connector submitted: its ticket (status, when written back) and,
    to admins (the connectors' event log is theirs, services/connectors.py), the ticket's
    fetch and write-back events."""
    ticket = ConnectorRepository(session).ticket_for_job(job.id)
    if ticket is None or ticket.tenant_id != login.principal.tenant_id:
        return {}
    found: dict[str, Any] = {"connector_ticket": ticket}
    if login.principal.is_admin:
        events, _ = connectors.list_events(session, login.principal, ticket.connector_id, PageRequest(limit=CONNECTOR_EVENTS_SHOWN),
                                           ticket_id=ticket.ticket_id)
        found["connector_events"] = events
    return found


def _explained_head(job: Job, explanation: ExplanationView) -> str | None:
    """The head the correction keys work on (the label schema's first) if it was explained."""
    order = [task.name for task in LabelSchema.model_validate(job.model_version.label_schema).tasks]
    explained = [name for name in order if name in explanation.heads] + sorted(set(explanation.heads) - set(order))
    return explained[0] if explained else None


@dataclass(frozen=True)
class Token:
    text: str
    weight: float = 0.0
    level: str = ""  # p1..p3 (pushes towards the label), n1..n3 (against); "" unmarked


# Weights are scaled so a field's strongest word is +-1; these are the shading steps.
WEIGHT_STEPS = ((0.66, "3"), (0.33, "2"), (0.1, "1"))


def weighted_tokens(text: str, spans: list[tuple[int, int, float]]) -> list[Token]:
    """The text cut into its weighted words and the text between them, in order."""
    tokens: list[Token] = []
    cursor = 0
    for start, end, weight in sorted(spans):
        if start < cursor or end > len(text) or start >= end:
            continue  # an overlapping or out-of-range span: leave that stretch unmarked
        if start > cursor:
            tokens.append(Token(text[cursor:start]))
        step = next((name for floor, name in WEIGHT_STEPS if abs(weight) >= floor), "")
        tokens.append(Token(text[start:end], weight, f"{'p' if weight > 0 else 'n'}{step}" if step else ""))
        cursor = end
    if cursor < len(text):
        tokens.append(Token(text[cursor:]))
    return tokens


@dataclass(frozen=True)
class SimilarCase:
    job_id: uuid.UUID
    score: float
    final_labels: dict[str, Any]
    corrected: bool  # final_labels are a reviewer's correction, not the model's answer


def similar_cases(session: Session, login: ConsoleLogin, job: Job, settings: Settings) -> list[SimilarCase]:
    """The case's nearest past cases (services/search.py) with their final labels: the
    latest correction where a reviewer gave one, else what the model said. A case without
    vectors (run before search existed, purged) has none."""
    try:
        found = search.similar_cases(session, login.principal, job.id, SIMILAR_SHOWN, settings)
    except Conflict:
        return []
    return [SimilarCase(case.job_id, case.score, case.correction.labels if case.correction and case.correction.labels else case.labels,
                        bool(case.correction and case.correction.labels)) for case in found.data]


def case_heatmap(session: Session, blobs: BlobStore, login: ConsoleLogin, job_id: uuid.UUID, head: str) -> bytes:
    """A head's heatmap drawn over the case's image (services/explanations.py draws it)."""
    return explanations.heatmap_overlay(session, blobs, login.principal, job_id, head)


def case_image(session: Session, login: ConsoleLogin, job_id: uuid.UUID) -> tuple[str, str] | None:
    """(blob digest, media type) of a case's image a browser can show; None otherwise."""
    job = jobs.get_job(session, login.principal, job_id)
    if job.input_blob is None or job.inputs_purged_at is not None or job.input_media_type not in BROWSER_IMAGES:
        return None
    return job.input_blob, job.input_media_type


def _task_choices(job: Job, heads: dict[str, Any]) -> list[TaskChoice]:
    schema = LabelSchema.model_validate(job.model_version.label_schema)
    suggested = suggested_labels(heads)
    choices = []
    for task in schema.tasks:
        probabilities = (heads.get(task.name) or {}).get("probabilities") or {}
        labels = [(name, probabilities.get(name)) for name in task.label_names] if task.kind != "regression" else []
        choices.append(TaskChoice(task.name, task.kind, labels, suggested.get(task.name)))
    return choices


# -- review actions -------------------------------------------------------------------------
ACTIONS = ("accept", "reject", "skip")
REJECT_COMMENT = "rejected in the console: the model's answer is wrong"


def labels_from_form(session: Session, login: ConsoleLogin, job_id: uuid.UUID, form: dict[str, list[str]]) -> dict[str, Any]:
    """The correction form's `label.<head>` fields as feedback labels (multilabel heads
    send one field per checked label; an empty regression field is left out)."""
    job = jobs.get_job(session, login.principal, job_id)
    schema = LabelSchema.model_validate(job.model_version.label_schema)
    labels: dict[str, Any] = {}
    for task in schema.tasks:
        values = form.get(f"label.{task.name}", [])
        if task.kind == "multilabel":
            labels[task.name] = [value for value in values if value]
        elif task.kind == "multiclass" and values and values[-1]:
            labels[task.name] = values[-1]
        elif task.kind == "regression" and values and values[-1].strip():
            try:
                labels[task.name] = float(values[-1])
            except ValueError:
                raise InputError(f"label.{task.name}", "a regression head takes a number") from None
    return labels


def review_case(
    session: Session, login: ConsoleLogin, job_id: uuid.UUID, action: str, labels: dict[str, Any], comment: str | None = None,
) -> ConsoleReviewAction:
    """Accept (the labels as given: the model's suggestion, or the reviewer's correction),
    reject (the answer is wrong, no better label given) or skip a case."""
    if action not in ACTIONS:
        raise InputError("action", f"one of {', '.join(ACTIONS)}")
    job = jobs.get_job(session, login.principal, job_id)
    feedback = None
    kind = action
    if action == "accept":
        if not labels:
            raise InputError("labels", "pick a label (1-9) before accepting")
        suggested = suggested_labels(job.result.heads) if job.result else {}
        kind = "accept" if all(_same(suggested.get(name), value) for name, value in labels.items()) else "correct"
        feedback = jobs.add_feedback(session, login.principal, job.id, labels, comment=comment or None, author=_author(login))
    elif action == "reject":
        feedback = jobs.add_feedback(session, login.principal, job.id, {}, comment=comment or REJECT_COMMENT, author=_author(login))
    row = ConsoleReviewAction(session_id=login.session_id, tenant_id=login.principal.tenant_id, job_id=job.id, action=kind,
                              feedback_id=feedback.id if feedback else None)
    ConsoleRepository(session).add(row)
    return row


def _same(suggested: Any, given: Any) -> bool:
    """A multilabel head's labels compare as a set (the form sends them in schema order)."""
    if isinstance(suggested, list) and isinstance(given, list):
        return sorted(suggested) == sorted(given)
    return suggested == given


def undo_last(session: Session, login: ConsoleLogin) -> uuid.UUID:
    """Withdraw this session's latest action: its feedback row is deleted (the audit log
    keeps that it was); the case goes back to the queue. Returns the case's job id."""
    repo = ConsoleRepository(session)
    action = repo.last_action(login.session_id)
    if action is None:
        raise Conflict("nothing to undo in this session")
    if action.feedback_id is not None:
        repo.delete_feedback(action.feedback_id)
        AuditRepository(session).record("feedback.withdraw", tenant_id=login.principal.tenant_id, api_key_id=login.principal.key_id,
                                        target=f"job:{action.job_id}", details={"feedback_id": str(action.feedback_id),
                                                                                "via": "console undo"})
        action.feedback_id = None
    action.undone_at = utcnow()
    session.flush()
    return action.job_id


@dataclass(frozen=True)
class HistoryEntry:
    action: ConsoleReviewAction
    plugin: str | None


def recent_history(session: Session, login: ConsoleLogin) -> list[HistoryEntry]:
    """This session's latest actions, newest first (what undo would walk back)."""
    repo = ConsoleRepository(session)
    actions = repo.recent_actions(login.session_id, HISTORY_SHOWN)
    found = repo.jobs_by_id(login.principal.tenant_id, [a.job_id for a in actions])
    return [HistoryEntry(action, found[action.job_id].plugin if action.job_id in found else None) for action in actions]


def _author(login: ConsoleLogin) -> str:
    return f"console ({login.key_prefix}…)"
