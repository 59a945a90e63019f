"""OCR results kept next to a data set, keyed by image content, so OCR runs once per image.

Training reads the same export many times (epochs, single-modality runs, evaluation);
OCR is by far the slowest step of reading it, so its text is kept in a sidecar JSON file
(`<export>.ocr.json`). Entries are keyed by the SHA-256 of the image bytes, so a renamed
file keeps its entry and a replaced file gets a new one. The file records the OCR engine
version and settings; when they change, the cache is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from twinlens_support_ticket import ocr

log = logging.getLogger(__name__)
SAVE_EVERY = 100


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def engine_signature() -> str:
    try:
        engine = version("rapidocr-onnxruntime")
    except PackageNotFoundError:
        engine = "unknown"
    return (f"rapidocr-onnxruntime {engine}; min_line_score {ocr.MIN_LINE_SCORE}; max_side {ocr.MAX_SIDE}; "
            f"postprocess {ocr.POSTPROCESS_VERSION}")


class OcrCache:
    def __init__(self, path: Path):
        self.path = path
        self.signature = engine_signature()
        self.entries: dict[str, str | None] = self._load()
        self.dirty = False
        self.pending = 0

    @classmethod
    def beside(cls, export: Path) -> "OcrCache":
        return cls(export.with_name(export.name + ".ocr.json"))

    def _load(self) -> dict[str, str | None]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("engine") != self.signature or not isinstance(data.get("texts"), dict):
            return {}  # another engine or setting: its text may differ, start over
        return {str(k): (v if isinstance(v, str) else None) for k, v in data["texts"].items()}

    def get(self, key: str) -> tuple[bool, str | None]:
        """(found, text); text None means OCR ran and found nothing."""
        return (key in self.entries, self.entries.get(key))

    def put(self, key: str, text: str | None) -> None:
        self.entries[key] = text
        self.dirty = True
        self.pending += 1
        if self.pending >= SAVE_EVERY:  # an interrupted first read keeps most of its work
            self.save()

    def save(self) -> None:
        """Write atomically; a read-only data folder only costs the cache, not the read."""
        if not self.dirty:
            return
        payload = json.dumps({"engine": self.signature, "texts": self.entries}, ensure_ascii=False, sort_keys=True)
        try:
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".ocr-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(payload)
            os.chmod(temporary, 0o644)  # mkstemp makes it private; the data set is not
            os.replace(temporary, self.path)
            self.dirty, self.pending = False, 0
        except OSError as exc:
            log.warning("could not write the OCR cache %s: %s", self.path, exc)
