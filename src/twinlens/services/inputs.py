"""Early validation of a job's inputs, in the API process, before anything is stored.

Cheap, torch-free checks that turn bad requests into clear 4xx answers: sizes, text
lengths, and the image's real format, pixel count (decompression bombs) and integrity.
The format is sniffed from the bytes, not trusted from the caller, by the plugin
(`Plugin.check_image_format`), which alone knows its formats (DICOM, say). The plugin's
own preprocessing (OCR, DICOM windowing, PHI scrubbing of text) runs later in the worker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import Plugin, RawInput
from twinlens.contract.schema import InputSchema
from twinlens.settings import Settings

# Declared types that say nothing about the bytes; we sniff instead of judging them.
UNINFORMATIVE_TYPES = {"application/octet-stream", "binary/octet-stream", ""}


@dataclass
class SubmittedInputs:
    """A job request as parsed from multipart or JSON, not yet validated."""

    image_bytes: bytes | None = None
    image_media_type: str | None = None
    image_url: str | None = None
    texts: dict[str, str | None] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None


def validate_inputs(plugin: Plugin, submitted: SubmittedInputs, settings: Settings) -> RawInput:
    """Check everything about the inputs; return them as the plugin's RawInput."""
    schema = plugin.input_schema()
    texts = _check_texts(schema, submitted.texts, settings.max_text_chars)
    _check_metadata(schema, submitted.metadata, settings.max_metadata_bytes)
    media_type = None
    if submitted.image_bytes is not None:
        if schema.image is None:
            raise InputError("image", f"plugin {plugin.name!r} takes no image")
        media_type = check_image(plugin, submitted.image_bytes, submitted.image_media_type, settings)
    elif schema.image is not None and schema.image.required:
        raise InputError("image", "this plugin needs an image")
    if submitted.image_bytes is None and not any(value for value in texts.values()):
        raise InputError("inputs", "neither an image nor any text was given")
    return RawInput(image_bytes=submitted.image_bytes, media_type=media_type, texts=texts, metadata=dict(submitted.metadata))


def check_texts_and_metadata(plugin: Plugin, texts: dict[str, str | None], metadata: Any, settings: Settings) -> dict[str, str | None]:
    """The text and metadata checks of `validate_inputs` alone (a batch row whose image is
    fetched later, by the worker); returns the cleaned texts."""
    schema = plugin.input_schema()
    cleaned = _check_texts(schema, texts, settings.max_text_chars)
    _check_metadata(schema, metadata, settings.max_metadata_bytes)
    return cleaned


def _check_texts(schema: InputSchema, texts: dict[str, str | None], max_chars: int) -> dict[str, str | None]:
    known = {text.name: text for text in schema.texts}
    unknown = sorted(set(texts) - set(known))
    if unknown:
        raise InputError(unknown[0], f"unknown text input; this plugin reads: {', '.join(known) or 'no text'}")
    cleaned: dict[str, str | None] = {}
    for name, spec in known.items():
        value = texts.get(name)
        value = value if value and value.strip() else None
        limit = min(spec.max_chars, max_chars)
        if value is not None and len(value) > limit:
            raise InputError(name, f"{len(value)} characters exceeds the limit of {limit}")
        if value is None and spec.required:
            raise InputError(name, "this text input is required")
        cleaned[name] = value
    return cleaned


def _check_metadata(schema: InputSchema, metadata: Any, max_bytes: int) -> None:
    if not isinstance(metadata, dict):
        raise InputError("metadata", "must be a JSON object")
    size = len(json.dumps(metadata, default=str))
    if size > max_bytes:
        raise InputError("metadata", f"{size} bytes exceeds the limit of {max_bytes}")
    for spec in schema.metadata:
        value = metadata.get(spec.name)
        if value is not None and spec.choices and value not in spec.choices:
            raise InputError(f"metadata.{spec.name}", f"{value!r} is not one of {list(spec.choices)}")


def check_image(plugin: Plugin, data: bytes, declared: str | None, settings: Settings) -> str:
    """Return the sniffed media type; raise 413/415/422 InputErrors for bad images."""
    accepted = set(plugin.accepted_media_types())
    if len(data) > settings.max_upload_bytes:
        raise InputError("image", f"{len(data)} bytes exceeds the limit of {settings.max_upload_bytes}", status=413)
    if not data:
        raise InputError("image", "the image is empty")
    declared = (declared or "").split(";", 1)[0].strip().lower()
    if declared not in UNINFORMATIVE_TYPES and declared not in accepted:
        raise InputError("image", f"content type {declared!r} is not accepted; use one of {sorted(accepted)}", status=415)
    return plugin.check_image_format(data, max_pixels=settings.max_image_pixels)


def request_fingerprint(plugin: str, raw: RawInput, webhook_url: str | None) -> str:
    """Hash of what a job request means (not its bytes on the wire: multipart boundaries
    differ between identical requests), for Idempotency-Key comparison."""
    digest = hashlib.sha256()
    image_hash = hashlib.sha256(raw.image_bytes).hexdigest() if raw.image_bytes else None
    canonical = {"plugin": plugin, "image": image_hash, "texts": raw.texts, "metadata": raw.metadata, "webhook_url": webhook_url}
    digest.update(json.dumps(canonical, sort_keys=True, default=str).encode())
    return digest.hexdigest()
