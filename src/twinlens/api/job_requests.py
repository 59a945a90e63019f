"""Turn a job-creation request (multipart or JSON) into SubmittedInputs.

Parsing only; every check on the contents is done by services.inputs. Kept out of the
route so the route stays a few lines.

Forms are parsed by Starlette's parsers, made strict in two ways: a text field whose
bytes are not valid in the request's charset (UTF-8 unless it says otherwise) is a 422
naming the field, where Starlette would decode it as Latin-1 and store mojibake as the
user's words; and a field over the part limit is a 413 naming the field, not a bare 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from twinlens.api.schemas import ImageBase64, ImageUrl, JobCreate
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin
from twinlens.services.inputs import SubmittedImage, SubmittedInputs
from twinlens.settings import Settings

FORM_FIELDS = {"image", "metadata", "webhook_url", "views"}
# A part named for its view: `image[lateral]`.
VIEW_PART = re.compile(r"^image\[([^\[\]]{1,100})\]$")
# A text part may hold this much even when the limits on texts and metadata are smaller,
# so that an over-long text is told its character limit rather than a byte limit.
MIN_PART_BYTES = 1024 * 1024


async def read_job_request(request: Request, plugin: Plugin, settings: Settings) -> SubmittedInputs:
    """The inputs as sent; a JSON image URL is left in `image_url` for the submission to fetch."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _from_form(request, content_type, plugin, settings)
    if content_type == "application/json":
        return await _from_json(request, settings)
    raise HTTPException(415, f"send multipart/form-data or application/json, not {content_type or 'no content type'!r}")


async def _from_form(request: Request, content_type: str, plugin: Plugin, settings: Settings) -> SubmittedInputs:
    text_names = set(plugin.input_schema().text_names)
    most = max_images(plugin)
    # One file more than the plugin takes is parsed, so the answer names the plugin's limit.
    form = await _parse_form(request, content_type, max_fields=len(text_names) + 8, max_part_bytes=part_limit(settings),
                             max_files=most + 1, plugin=plugin)
    try:
        return await _inputs_from_form(form, text_names, settings)
    finally:
        await form.close()


def max_images(plugin: Plugin) -> int:
    image = plugin.input_schema().image
    return image.max_images if image is not None else 1


def part_limit(settings: Settings) -> int:
    """Bytes one text part of a form may hold: four per character (UTF-8's most) plus the metadata."""
    return max(MIN_PART_BYTES, settings.max_text_chars * 4 + settings.max_metadata_bytes)


async def _parse_form(request: Request, content_type: str, *, max_fields: int, max_part_bytes: int,
                      max_files: int = 1, plugin: Plugin | None = None) -> FormData:
    try:
        if content_type == "multipart/form-data":
            parser = StrictMultiPartParser(request.headers, request.stream(), max_files=max_files, max_fields=max_fields,
                                           max_part_size=max_part_bytes)
        else:
            parser = StrictFormParser(request.headers, request.stream(), max_fields=max_fields, max_part_size=max_part_bytes)
        return await parser.parse()
    except MultiPartException as exc:
        if plugin is not None and exc.message.startswith("Too many files"):
            most = max_images(plugin)
            raise InputError("image", f"more than {max_files} images sent; plugin {plugin.name!r} takes at most "
                                      f"{most} per job (max_images={most})") from exc
        raise InputError("body", f"not a valid form: {exc.message}") from exc


async def _inputs_from_form(form: FormData, text_names: set[str], settings: Settings) -> SubmittedInputs:
    unknown = sorted(set(form.keys()) - FORM_FIELDS - text_names - {key for key in form.keys() if VIEW_PART.match(key)})
    if unknown:
        raise InputError(_named(unknown[0]), f"unknown form field; accepted: {', '.join(sorted(FORM_FIELDS | text_names))}, "
                                             "image[VIEW]")
    submitted = SubmittedInputs(
        texts={name: _form_text(form.get(name), name) for name in text_names if form.get(name) is not None},
        metadata=_parse_metadata(form.get("metadata")),
        webhook_url=_form_text(form.get("webhook_url"), "webhook_url") or None,
    )
    images = await _form_images(form, settings)
    if images:
        first, submitted.more_images = images[0], images[1:]
        submitted.image_bytes, submitted.image_media_type, submitted.image_view = first.data, first.media_type, first.view
    return submitted


async def _form_images(form: FormData, settings: Settings) -> list[SubmittedImage]:
    """Every `image` part in order (their views from the `views` field, if sent), then the
    `image[VIEW]` parts."""
    plain = form.getlist("image")
    views = _parse_views(form.get("views"), len(plain))
    images = []
    for index, part in enumerate(plain):
        images.append(await _form_image(part, "image" if len(plain) == 1 else f"image[{index}]", views[index], settings))
    for key in form.keys():
        if (match := VIEW_PART.match(key)) is not None:
            for part in form.getlist(key):
                images.append(await _form_image(part, key, match.group(1), settings))
    return images


async def _form_image(part: Any, field: str, view: str | None, settings: Settings) -> SubmittedImage:
    if not isinstance(part, UploadFile):
        raise InputError(field, "send the image as a file part (filename and bytes), not a text field", status=415)
    return SubmittedImage(await part.read(settings.max_upload_bytes + 1), part.content_type, view=view, field=field)


def _parse_views(value: Any, count: int) -> list[str | None]:
    """`views`: the view of each `image` part, in order, comma-separated (`frontal,lateral`)
    or a JSON list; an empty entry leaves that image unnamed."""
    if value is None or value == "":
        return [None] * count
    text = _form_text(value, "views") or ""
    try:
        names = json.loads(text) if text.lstrip().startswith("[") else text.split(",")
    except json.JSONDecodeError as exc:
        raise InputError("views", f"not valid JSON: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(name, str) or name is None for name in names):
        raise InputError("views", "a list of view names")
    if len(names) != count:
        raise InputError("views", f"{len(names)} views named for {count} image part(s); name one per image (empty: unnamed)")
    return [name.strip() or None if isinstance(name, str) else None for name in names]


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
    if image is not None and body.inputs.images:
        raise InputError("inputs.images", "send one `image` or a list of `images`, not both")
    if isinstance(image, ImageBase64):
        submitted.image_bytes = _decode_base64(image.base64, settings.max_upload_bytes)
        submitted.image_media_type, submitted.image_view = image.media_type, image.view
    elif isinstance(image, ImageUrl):
        submitted.image_url, submitted.image_view = image.url, image.view
    submitted.more_images = [_json_image(item, f"inputs.images[{index}]", settings)
                             for index, item in enumerate(body.inputs.images or [])]
    return submitted


def _json_image(item: ImageBase64 | ImageUrl, field: str, settings: Settings) -> SubmittedImage:
    if isinstance(item, ImageUrl):
        return SubmittedImage(url=item.url, view=item.view, field=field)
    return SubmittedImage(_decode_base64(item.base64, settings.max_upload_bytes, f"{field}.base64"), item.media_type,
                          view=item.view, field=field)


def _decode_base64(encoded: str, max_bytes: int, field: str = "inputs.image.base64") -> bytes:
    if len(encoded) * 3 // 4 > max_bytes + 3:
        raise InputError(field, f"the image is over the limit of {max_bytes} bytes", status=413)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(field, f"not valid base64: {exc}") from exc


def _named(field: str) -> str:
    """The field an error names; a part sent without a name is the body's fault (found by
    fuzzing: errors naming the field "")."""
    return field or "body"


def _strict_text(data: bytes | bytearray, charset: str, field: str) -> str:
    try:
        return bytes(data).decode(charset)
    except UnicodeDecodeError as exc:
        raise InputError(_named(field), f"not valid {charset} text: byte {exc.start} ({data[exc.start]:#04x}) cannot be decoded") from exc


def _part_too_large(field: str, limit: int) -> InputError:
    return InputError(_named(field), f"the field is over the limit of {limit} bytes for one form field", status=413)


class StrictMultiPartParser(MultiPartParser):
    """multipart/form-data: text parts decoded strictly, the part limit naming its field."""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_part_data(data, start, end)
        except MultiPartException:
            raise _part_too_large(self._current_part.field_name, self.max_part_size) from None

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            # Decoded here first so that bytes Starlette would read as Latin-1 are refused.
            _strict_text(part.data, self._charset, part.field_name)
        super().on_part_end()


class StrictFormParser(FormParser):
    """application/x-www-form-urlencoded: percent-decoded to bytes, then strict UTF-8 (the
    WHATWG rule; Starlette decodes the raw bytes as Latin-1 first)."""

    def on_field_name(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_field_name(data, start, end)
        except MultiPartException:
            raise _part_too_large("body", self.max_part_size) from None

    def on_field_data(self, data: bytes, start: int, end: int) -> None:
        try:
            super().on_field_data(data, start, end)
        except MultiPartException:
            raise _part_too_large(self._decoded(self._field_name, "body"), self.max_part_size) from None

    def on_field_end(self) -> None:
        name = self._decoded(self._field_name, "body")
        value = self._decoded(self._field_value, name)
        super().on_field_end()
        self._items[-1] = (name, value)

    @staticmethod
    def _decoded(raw: bytearray, field: str) -> str:
        return _strict_text(unquote_to_bytes(bytes(raw).replace(b"+", b" ")), "utf-8", field)
