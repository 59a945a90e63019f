"""The unit of data the engine consumes: 0..N images, named texts, labels."""

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

    Several images (a ticket's photos, a study's views): `image` is the first and
    `more_images` the rest; `images` reads (and sets) them as one list. `views` names
    each image's view (a list as long as `images`, entries None where unnamed), or is
    empty when none is named. Code that knows one image only keeps reading `image`.
    """

    image: "Image.Image | None" = None
    texts: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, LabelValue] = field(default_factory=dict)
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    more_images: "list[Image.Image]" = field(default_factory=list)
    views: list[str | None] = field(default_factory=list)

    @property
    def images(self) -> "list[Image.Image]":
        return [self.image, *self.more_images] if self.image is not None else list(self.more_images)

    @images.setter
    def images(self, images: "list[Image.Image]") -> None:
        self.image = images[0] if images else None
        self.more_images = list(images[1:])

    @classmethod
    def of_images(cls, images: "list[Image.Image]", views: list[str | None] | None = None, **fields: Any) -> "Sample":
        """A sample of several images (each with its view name, or None)."""
        sample = cls(**fields)
        sample.images = images
        sample.views = list(views) if views and any(views) else []
        return sample

    def view_of(self, index: int) -> str | None:
        return self.views[index] if index < len(self.views) else None

    def has(self, modality: str) -> bool:
        if modality == "image":
            return bool(self.images)
        value = self.texts.get(modality)
        return value is not None and value.strip() != ""
