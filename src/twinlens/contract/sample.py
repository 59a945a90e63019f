"""The unit of data the engine consumes: one image, named texts, labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # PIL is light, but keep the import where it is needed
    from PIL import Image

# Label value per task: str (multiclass), list[str] (multilabel), float (regression),
# or None when this sample has no label for that task (it is then left out of that loss).
LabelValue = str | list[str] | float | None


@dataclass
class Sample:
    """One example after a plugin's preprocessing.

    `texts` maps a text input name (e.g. "text", "ocr") to its cleaned text, or None when
    missing. A missing image is `image=None`. Each named text is its own modality.
    `meta["extras"]` (a JSON-able dict) is what preprocessing found that decide() and the
    explanation need (OCR text, input doubts...): predictions carry it as `extras`.
    """

    image: "Image.Image | None" = None
    texts: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, LabelValue] = field(default_factory=dict)
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def has(self, modality: str) -> bool:
        if modality == "image":
            return self.image is not None
        value = self.texts.get(modality)
        return value is not None and value.strip() != ""
