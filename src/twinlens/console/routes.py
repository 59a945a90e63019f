"""The console's pages. Each route parses, authorises through the console session, calls
one service and renders a template; POSTs check the CSRF token and answer with a redirect
(so a reload never repeats an action)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from twinlens.api.deps import BlobsDep, DatabaseDep, SessionDep, SettingsDep
from twinlens.api.job_requests import part_limit
from twinlens.console.pages import ConsoleRoute, error_page, page
from twinlens.console.security import (
    CSRF_FIELD,
    LoginDep,
    check_form_csrf,
    check_login_csrf,
    clear_session_cookie,
    new_login_csrf,
    set_login_csrf_cookie,
    set_session_cookie,
)
from twinlens.contract.errors import InputError
from twinlens.contract.registry import get_plugin
from twinlens.services import console_models, console_sessions, review
from twinlens.services.errors import Unauthorized
from twinlens.services.inputs import SubmittedInputs
from twinlens.services.plugins import installed_plugins
from twinlens.services.review import QueueQuery
from twinlens.services.submission import JobSubmission, submit_job_request

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
QUEUE_FIELDS = ("plugin", "head", "label", "model_version", "date_from", "date_to")
HOME = "/console/queue"
# A submitted case waits this long for its result before its page opens (it refreshes
# itself until the result is there).
SUBMIT_WAIT_SECONDS = 10.0
MAX_FORM_FIELDS = 64  # the correction form: one field per label of each head, and a few more


# -- login ----------------------------------------------------------------------------------
@router.get("")
def console_home() -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303)


@router.get("/login")
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = HOME) -> Response:
    token = new_login_csrf()
    response = page(request, "login.html", {"csrf_token": token, "next": _local(next), "login": None})
    set_login_csrf_cookie(response, request, token)
    return response


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await _read_form(request)
    check_login_csrf(request, form)
    token, _ = await run_in_threadpool(console_sessions.login_with_key, session, _text(form, "api_key"))
    response = RedirectResponse(_local(_text(form, "next") or HOME), status_code=303)
    set_session_cookie(response, request, token)
    return response


@router.get("/login/{token}")
def login_link(request: Request, session: SessionDep, token: Annotated[str, Path(max_length=200)]) -> Response:
    """A one-time link (`twinlens demo` prints one): opens a session, then the queue. A
    used or expired link says so (rather than sending the browser to the login form)."""
    try:
        session_token, _ = console_sessions.login_with_link(session, token)
    except Unauthorized as exc:
        return error_page(request, 401, exc.detail)
    response = RedirectResponse(HOME, status_code=303)
    set_session_cookie(response, request, session_token)
    return response


@router.post("/logout")
async def logout(request: Request, login: LoginDep, session: SessionDep) -> Response:
    check_form_csrf(login, await _read_form(request))
    await run_in_threadpool(console_sessions.logout, session, login)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(response)
    return response


# -- the queue ------------------------------------------------------------------------------
@router.get("/queue")
def queue_page(request: Request, login: LoginDep, session: SessionDep) -> Response:
    query, query_string = _queue_query(request.query_params)
    queue = review.review_queue(session, login, query)
    return page(request, "queue.html", {"login": login, "queue": queue, "filters": _filters(request.query_params),
                                        "query_string": query_string})


@router.get("/queue/next")
def next_case(request: Request, login: LoginDep, session: SessionDep) -> RedirectResponse:
    query, query_string = _queue_query(request.query_params)
    return RedirectResponse(_after_review(review.next_case(session, login, query), query_string), status_code=303)


# -- a case ---------------------------------------------------------------------------------
@router.get("/cases/{job_id}")
def case_page(request: Request, job_id: uuid.UUID, login: LoginDep, session: SessionDep, settings: SettingsDep) -> Response:
    _, query_string = _queue_query(request.query_params)
    case = review.case_view(session, login, job_id, settings)
    history = review.recent_history(session, login)
    return page(request, "case.html", {"login": login, "case": case, "recent": history, "query_string": query_string,
                                       "filters": _filters(request.query_params)})


@router.get("/cases/{job_id}/image")
def case_image(job_id: uuid.UUID, login: LoginDep, session: SessionDep, blobs: BlobsDep) -> Response:
    found = review.case_image(session, login, job_id)
    if found is None:
        return Response(status_code=404)
    digest, media_type = found
    return FileResponse(blobs.path_for(digest), media_type=media_type)


@router.get("/cases/{job_id}/heatmap.png")
def case_heatmap(job_id: uuid.UUID, login: LoginDep, session: SessionDep, blobs: BlobsDep,
                 head: Annotated[str, Query(min_length=1, max_length=100)]) -> Response:
    return Response(review.case_heatmap(session, blobs, login, job_id, head), media_type="image/png")


@router.post("/cases/{job_id}/review")
async def review_case(request: Request, job_id: uuid.UUID, login: LoginDep, session: SessionDep) -> Response:
    form = await _read_form(request)
    check_form_csrf(login, form)
    query, query_string = _queue_query(dict(parse_qsl(_text(form, "queue"))))
    action = _text(form, "action")
    fields = {name: [v for v in form.getlist(name) if isinstance(v, str)] for name in form}

    def act() -> uuid.UUID | None:
        labels = review.labels_from_form(session, login, job_id, fields) if action == "accept" else {}
        review.review_case(session, login, job_id, action, labels, comment=_text(form, "comment").strip() or None)
        return review.next_case(session, login, query, after=job_id)

    return RedirectResponse(_after_review(await run_in_threadpool(act), query_string), status_code=303)


@router.post("/undo")
async def undo(request: Request, login: LoginDep, session: SessionDep) -> Response:
    form = await _read_form(request)
    check_form_csrf(login, form)
    _, query_string = _queue_query(dict(parse_qsl(_text(form, "queue"))))
    job_id = await run_in_threadpool(review.undo_last, session, login)
    return RedirectResponse(_case_url(job_id, query_string), status_code=303)


# -- submit a case --------------------------------------------------------------------------
@router.get("/submit")
def submit_page(request: Request, login: LoginDep, session: SessionDep,
                plugin: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    installed = [view.name for view in installed_plugins() if view.error is None]
    available = console_models.plugins_with_a_model(session, login.principal, installed)
    chosen = get_plugin(plugin) if plugin else (get_plugin(available[0]) if available else None)
    return page(request, "submit.html", {"login": login, "plugins": available, "chosen": chosen,
                                         "schema": chosen.input_schema() if chosen else None})


@router.post("/submit")
async def submit_case(
    request: Request, login: LoginDep, session: SessionDep, db: DatabaseDep, blobs: BlobsDep, settings: SettingsDep,
) -> Response:
    form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=part_limit(settings))
    try:
        check_form_csrf(login, form)
        plugin = get_plugin(_text(form, "plugin"))
        inputs = SubmittedInputs(texts={name: _text(form, f"text.{name}") for name in plugin.input_schema().text_names
                                        if _text(form, f"text.{name}").strip()})
        image = form.get("image")
        if isinstance(image, UploadFile) and image.filename:
            inputs.image_bytes = await image.read(settings.max_upload_bytes + 1)
            inputs.image_media_type = image.content_type
    finally:
        await form.close()
    submitted = await submit_job_request(session, db, blobs, settings, login.principal, JobSubmission(plugin, inputs),
                                         wait_seconds=SUBMIT_WAIT_SECONDS)
    return RedirectResponse(_case_url(submitted.job.id, ""), status_code=303)


# -- models ---------------------------------------------------------------------------------
MODEL_NOTICES = {
    "promoted": "Promoted: it is the champion now; new jobs use it.",
    "blocked": "The evaluation gate blocked the promotion; nothing changed. Its report is listed with the version.",
    "rolled_back": "Rolled back: the previous champion is the champion again.",
    "shadow": "Shadow settings saved.",
}


@router.get("/models")
def models_page(request: Request, login: LoginDep, session: SessionDep) -> Response:
    overview = console_models.model_overview(session, login.principal)
    notice = next((text for key, text in MODEL_NOTICES.items() if key in request.query_params), None)
    return page(request, "models.html", {"login": login, "overview": overview, "notice": notice})


@router.post("/models/{model_id}/promote")
async def promote_model(request: Request, model_id: uuid.UUID, login: LoginDep, session: SessionDep,
                        settings: SettingsDep) -> Response:
    form = await _read_form(request)
    check_form_csrf(login, form)
    promotion = await run_in_threadpool(console_models.promote, session, login.principal, model_id, settings,
                                        force=_text(form, "force") == "on", reason=_text(form, "reason").strip() or None)
    # A blocked attempt is answered normally too, so its gate report is committed (as the API does).
    return RedirectResponse("/console/models?" + ("promoted=1" if promotion.promoted else "blocked=1"), status_code=303)


@router.post("/models/{model_id}/rollback")
async def rollback_model(request: Request, model_id: uuid.UUID, login: LoginDep, session: SessionDep) -> Response:
    form = await _read_form(request)
    check_form_csrf(login, form)
    await run_in_threadpool(console_models.rollback, session, login.principal, model_id, _text(form, "reason").strip() or None)
    return RedirectResponse("/console/models?rolled_back=1", status_code=303)


@router.post("/models/{model_id}/shadow")
async def shadow_model(request: Request, model_id: uuid.UUID, login: LoginDep, session: SessionDep) -> Response:
    form = await _read_form(request)
    check_form_csrf(login, form)
    share = None if _text(form, "stop") else _share(_text(form, "share"))
    await run_in_threadpool(console_models.set_shadow, session, login.principal, model_id, share)
    return RedirectResponse("/console/models?shadow=1", status_code=303)


def _share(value: str) -> float:
    try:
        return float(value) / 100.0
    except ValueError:
        raise InputError("share", "a percentage of live jobs, e.g. 20") from None


# -- helpers --------------------------------------------------------------------------------
async def _read_form(request: Request) -> FormData:
    """A url-encoded form (every console POST but the upload); files are refused."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    if CSRF_FIELD not in form:
        await form.close()
        raise InputError(CSRF_FIELD, "the form carries no CSRF token; reload the page and try again", status=403)
    return form


def _text(form: FormData | Mapping[str, str], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _local(target: str) -> str:
    """Redirect targets stay inside the console (no open redirect to another site)."""
    return target if target.startswith("/console/") and not target.startswith("//") and "\\" not in target else HOME


def _filters(params: Mapping[str, str]) -> dict[str, str]:
    return {name: params.get(name, "") for name in QUEUE_FIELDS}


def _queue_query(params: Mapping[str, str]) -> tuple[QueueQuery, str]:
    """The queue's filters from a query string (or a form's copy of it), and that query
    string rebuilt from the known filters only."""
    given = {name: str(params.get(name, "")).strip()[:200] for name in QUEUE_FIELDS if str(params.get(name, "")).strip()}
    query = QueueQuery(
        plugin=given.get("plugin"), head=given.get("head"), label=given.get("label"),
        model_version_id=_uuid(given.get("model_version"), "model_version"),
        created_from=_day_start(given.get("date_from"), "date_from"),
        created_before=_day_start(given.get("date_to"), "date_to", days_after=1),
    )
    return query, urlencode(given)


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InputError(field, "not a model version id") from None


def _day_start(value: str | None, field: str, days_after: int = 0) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InputError(field, "a date as YYYY-MM-DD") from None
    return datetime.combine(day + timedelta(days=days_after), time.min, tzinfo=UTC)


def _case_url(job_id: uuid.UUID, query_string: str) -> str:
    return f"/console/cases/{job_id}" + (f"?{query_string}" if query_string else "")


def _after_review(job_id: uuid.UUID | None, query_string: str) -> str:
    if job_id is None:
        return HOME + (f"?{query_string}&" if query_string else "?") + "done=1"
    return _case_url(job_id, query_string)


