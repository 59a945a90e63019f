"""Turn a job-creation request (multipart or JSON) into SubmittedInputs.

Parsing only; every check on the contents is done by services.inputs. Kept out of the
route so the route stays a few lines.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from twinlens.api.schemas import ImageBase64, ImageUrl, JobCreate
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin
from twinlens.services.inputs import SubmittedInputs
from twinlens.settings import Settings

FORM_FIELDS = {"image", "metadata", "webhook_url"}


async def read_job_request(request: Request, plugin: Plugin, settings: Settings) -> SubmittedInputs:
    """The inputs as sent; a JSON image URL is left in `image_url` for the submission to fetch."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _from_form(request, plugin, settings)
    if content_type == "application/json":
        return await _from_json(request, settings)
    raise HTTPException(415, f"send multipart/form-data or application/json, not {content_type or 'no content type'!r}")


async def _from_form(request: Request, plugin: Plugin, settings: Settings) -> SubmittedInputs:
    text_names = set(plugin.input_schema().text_names)
    part_limit = max(1024 * 1024, settings.max_text_chars * 4 + settings.max_metadata_bytes)
    form = await request.form(max_files=1, max_fields=len(text_names) + 8, max_part_size=part_limit)
    unknown = sorted(set(form.keys()) - FORM_FIELDS - text_names)
    if unknown:
        raise InputError(unknown[0], f"unknown form field; accepted: {', '.join(sorted(FORM_FIELDS | text_names))}")
    submitted = SubmittedInputs(
        texts={name: _form_text(form.get(name), name) for name in text_names if form.get(name) is not None},
        metadata=_parse_metadata(form.get("metadata")),
        webhook_url=_form_text(form.get("webhook_url"), "webhook_url") or None,
    )
    image = form.get("image")
    if isinstance(image, UploadFile):
        submitted.image_bytes = await image.read(settings.max_upload_bytes + 1)
        submitted.image_media_type = image.content_type
    elif image is not None:
        raise InputError("image", "send the image as a file part (filename and bytes), not a text field", status=415)
    return submitted


def _form_text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InputError(name, "expected a text field, got a file")


def _parse_metadata(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    try:
        parsed = json.loads(_form_text(value, "metadata"))
    except json.JSONDecodeError as exc:
        raise InputError("metadata", f"not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InputError("metadata", "must be a JSON object")
    return parsed


async def _from_json(request: Request, settings: Settings) -> SubmittedInputs:
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError("body", f"not valid JSON: {exc}") from exc
    try:
        body = JobCreate.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from exc
    texts = {name: value for name, value in (body.inputs.model_extra or {}).items()}
    submitted = SubmittedInputs(texts=texts, metadata=body.metadata, webhook_url=body.webhook_url)
    image = body.inputs.image
    if isinstance(image, ImageBase64):
        submitted.image_bytes = _decode_base64(image.base64, settings.max_upload_bytes)
        submitted.image_media_type = image.media_type
    elif isinstance(image, ImageUrl):
        submitted.image_url = image.url
    return submitted


def _decode_base64(encoded: str, max_bytes: int) -> bytes:
    if len(encoded) * 3 // 4 > max_bytes + 3:
        raise InputError("inputs.image.base64", f"the image is over the limit of {max_bytes} bytes", status=413)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError("inputs.image.base64", f"not valid base64: {exc}") from exc
