"""A job's images in storage: every image content-addressed in the blob store, the first
also in the job row's `input_blob` column (what single-image code paths read: the review
console, the learning export), and, for a job of several images or of named views, the
list of all of them under one reserved key of the job's stored metadata JSON.

The reserved key keeps the schema as it is (no migration): callers may not send it
(`check_caller_metadata`), and everything that shows, sends or exports a job's metadata
reads `caller_metadata` instead. Retention, DELETE and erasure forget every blob listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinlens.blobs import BlobStore
from twinlens.contract.errors import InputError
from twinlens.contract.plugin import RawImage, RawInput

# `$` keeps it out of any caller's naming scheme and is no SQL LIKE wildcard.
IMAGES_KEY = "$images"


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    media_type: str | None
    view: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "media_type": self.media_type, "view": self.view}


def check_caller_metadata(metadata: dict[str, Any]) -> None:
    if IMAGES_KEY in metadata:
        raise InputError(f"metadata.{IMAGES_KEY}", "this metadata key is reserved (the job's list of images)")


def store_images(blobs: BlobStore, raw: RawInput) -> tuple[list[StoredImage], dict[str, Any]]:
    """Put every image in the blob store; returns them and the metadata to store (the
    caller's, plus the list when one image column cannot say it all)."""
    stored = [StoredImage(blobs.put(image.data), image.media_type, image.view) for image in raw.images]
    metadata = dict(raw.metadata)
    if len(stored) > 1 or any(image.view for image in stored):
        metadata[IMAGES_KEY] = [image.as_dict() for image in stored]
    return stored, metadata


def stored_images(input_blob: str | None, media_type: str | None, meta: dict[str, Any] | None) -> list[StoredImage]:
    """A job's images in order, from its row (works for jobs stored before lists too)."""
    listed = (meta or {}).get(IMAGES_KEY)
    if isinstance(listed, list):
        return [StoredImage(item["sha256"], item.get("media_type"), item.get("view")) for item in listed]
    return [StoredImage(input_blob, media_type)] if input_blob else []


def job_blobs(job: Any) -> set[str]:
    """Every blob key a job row names."""
    return {image.sha256 for image in stored_images(job.input_blob, job.input_media_type, job.meta)}


def caller_metadata(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata as the caller sent it (less the reserved list of images)."""
    return {key: value for key, value in (meta or {}).items() if key != IMAGES_KEY}


def raw_input(images: list[tuple[bytes, StoredImage]], texts: dict[str, Any], metadata: dict[str, Any]) -> RawInput:
    """A stored job's inputs as the plugin's RawInput (images already read from the store)."""
    return RawInput.of_images([RawImage(data, image.media_type, image.view) for data, image in images],
                              texts=texts, metadata=caller_metadata(metadata))


def listed_blobs(metas: list[dict[str, Any]]) -> set[str]:
    """The blobs the lists of images in these stored metadata name."""
    found: set[str] = set()
    for meta in metas:
        for item in meta.get(IMAGES_KEY) or []:
            if isinstance(item, dict) and isinstance(item.get("sha256"), str):
                found.add(item["sha256"])
    return found
