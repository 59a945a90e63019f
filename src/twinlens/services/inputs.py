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
from twinlens.contract.plugin import Plugin, RawImage, RawInput
from twinlens.contract.schema import InputSchema
from twinlens.services.job_images import check_caller_metadata
from twinlens.settings import Settings

# Declared types that say nothing about the bytes; we sniff instead of judging them.
UNINFORMATIVE_TYPES = {"application/octet-stream", "binary/octet-stream", ""}


@dataclass
class SubmittedImage:
    """One image of a request: bytes (or a URL to fetch), declared type, view name, and the
    field an error about it names (`image`, `image[lateral]`, `inputs.images[1]`)."""

    data: bytes | None = None
    media_type: str | None = None
    url: str | None = None
    view: str | None = None
    field: str = "image"


@dataclass
class SubmittedInputs:
    """A job request as parsed from multipart or JSON, not yet validated. `image_*` is a
    request's one image (or its first); `more_images` the others of a request of several."""

    image_bytes: bytes | None = None
    image_media_type: str | None = None
    image_url: str | None = None
    texts: dict[str, str | None] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    more_images: list[SubmittedImage] = field(default_factory=list)
    image_view: str | None = None

    def images(self) -> list[SubmittedImage]:
        first = self.image_bytes is not None or self.image_url is not None
        one = [SubmittedImage(self.image_bytes, self.image_media_type, self.image_url, self.image_view)] if first else []
        return [*one, *self.more_images]


def validate_inputs(plugin: Plugin, submitted: SubmittedInputs, settings: Settings) -> RawInput:
    """Check everything about the inputs; return them as the plugin's RawInput."""
    schema = plugin.input_schema()
    texts = _check_texts(schema, submitted.texts, settings.max_text_chars)
    _check_metadata(schema, submitted.metadata, settings.max_metadata_bytes)
    images = submitted.images()
    if images:
        if schema.image is None:
            raise InputError("image", f"plugin {plugin.name!r} takes no image")
        check_image_count(plugin, submitted)
        _check_total_bytes(images, settings)
        checked = [RawImage(image.data, check_image(plugin, image.data, image.media_type, settings, field=image.field), image.view)
                   for image in images if image.data is not None]
    elif schema.image is not None and schema.image.required:
        raise InputError("image", "this plugin needs an image")
    if not images and not any(value for value in texts.values()):
        raise InputError("inputs", "neither an image nor any text was given")
    return RawInput.of_images(checked if images else [], texts=texts, metadata=dict(submitted.metadata))


def check_image_count(plugin: Plugin, submitted: SubmittedInputs) -> None:
    """At most the plugin's `max_images`, views it names, each view once (422s naming the
    limit or the view). Runs before any URL is fetched."""
    images = submitted.images()
    spec = plugin.input_schema().image
    if not images or spec is None:
        return
    if len(images) > spec.max_images:
        raise InputError("image", f"{len(images)} images sent; plugin {plugin.name!r} takes at most {spec.max_images} "
                                  f"image{'s' if spec.max_images > 1 else ''} per job (max_images={spec.max_images})")
    views = [image.view for image in images if image.view is not None]
    for image in images:
        if image.view is not None and image.view not in spec.views:
            named = f"its views are: {', '.join(spec.views)}" if spec.views else "it names no views"
            raise InputError(image.field, f"unknown view {image.view!r} for plugin {plugin.name!r}; {named}")
    if len(set(views)) != len(views):
        raise InputError("image", "two images were sent as the same view")


def _check_total_bytes(images: list[SubmittedImage], settings: Settings) -> None:
    total = sum(len(image.data or b"") for image in images)
    if len(images) > 1 and total > settings.max_images_total_bytes:
        raise InputError("image", f"the {len(images)} images hold {total} bytes together, over the limit of "
                                  f"{settings.max_images_total_bytes}", status=413)


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
    check_caller_metadata(metadata)
    size = len(json.dumps(metadata, default=str))
    if size > max_bytes:
        raise InputError("metadata", f"{size} bytes exceeds the limit of {max_bytes}")
    for spec in schema.metadata:
        value = metadata.get(spec.name)
        if value is not None and spec.choices and value not in spec.choices:
            raise InputError(f"metadata.{spec.name}", f"{value!r} is not one of {list(spec.choices)}")


def check_image(plugin: Plugin, data: bytes, declared: str | None, settings: Settings, *, field: str = "image") -> str:
    """Return the sniffed media type; raise 413/415/422 InputErrors for bad images (naming
    `field`: which of several images it was)."""
    accepted = set(plugin.accepted_media_types())
    if len(data) > settings.max_upload_bytes:
        raise InputError(field, f"{len(data)} bytes exceeds the limit of {settings.max_upload_bytes}", status=413)
    if not data:
        raise InputError(field, "the image is empty")
    declared = (declared or "").split(";", 1)[0].strip().lower()
    if declared not in UNINFORMATIVE_TYPES and declared not in accepted:
        raise InputError(field, f"content type {declared!r} is not accepted; use one of {sorted(accepted)}", status=415)
    try:
        return plugin.check_image_format(data, max_pixels=settings.max_image_pixels)
    except InputError as exc:
        if field == "image" or exc.field != "image":
            raise
        raise InputError(field, exc.reason, status=exc.status) from exc


def request_fingerprint(plugin: str, raw: RawInput, webhook_url: str | None, explain: bool = False) -> str:
    """Hash of what a job request means (not its bytes on the wire: multipart boundaries
    differ between identical requests), for Idempotency-Key comparison."""
    digest = hashlib.sha256()
    image_hash: Any = hashlib.sha256(raw.image_bytes).hexdigest() if raw.image_bytes else None
    if len(raw.images) > 1 or raw.image_view:  # one image keeps the fingerprint it always had
        image_hash = [[hashlib.sha256(image.data).hexdigest(), image.view] for image in raw.images]
    canonical = {"plugin": plugin, "image": image_hash, "texts": raw.texts, "metadata": raw.metadata, "webhook_url": webhook_url}
    if explain:  # asking for an explanation is a different request; without it, the old fingerprint
        canonical["explain"] = True
    digest.update(json.dumps(canonical, sort_keys=True, default=str).encode())
    return digest.hexdigest()
