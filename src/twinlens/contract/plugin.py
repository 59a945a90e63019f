"""The plugin contract: what a domain plugin declares and implements.

A plugin is a class registered under the entry-point group ``twinlens.plugins``. Importing
a plugin module must not import torch (the API reads schemas and calls `prepare` and
`decide` without the engine); load heavy things inside the methods that need them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from twinlens.contract.decision import DecisionBase
from twinlens.contract.errors import RowError
from twinlens.contract.prediction import Prediction
from twinlens.contract.sample import Sample
from twinlens.contract.schema import InputSchema, LabelSchema, TaskKind
from twinlens.contract.spec import ModelSpec, TrainConfig

if TYPE_CHECKING:
    from PIL import Image

API_VERSION = 1


@dataclass
class RawImage:
    """One image of a job as received: its bytes, media type and (if named) view."""

    data: bytes
    media_type: str | None = None
    view: str | None = None


@dataclass
class RawInput:
    """A job's inputs as received, before the plugin's preprocessing.

    `image_bytes`/`media_type` are the first image (all a single-image plugin reads);
    `more_images` the second and later ones, and `image_view` the first one's view name.
    `images` lists them all. A plugin taking several images (`ImageInput.max_images`)
    must read, and sanitize, every one of them.
    """

    image_bytes: bytes | None = None
    media_type: str | None = None  # as declared by the caller; plugins sniff the bytes too
    texts: dict[str, str | None] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    more_images: list[RawImage] = field(default_factory=list)
    image_view: str | None = None

    @property
    def images(self) -> list[RawImage]:
        first = [RawImage(self.image_bytes, self.media_type, self.image_view)] if self.image_bytes else []
        return [*first, *self.more_images]

    @classmethod
    def of_images(cls, images: list[RawImage], **fields: Any) -> "RawInput":
        if not images:
            return cls(**fields)
        first, *rest = images
        return cls(image_bytes=first.data, media_type=first.media_type, image_view=first.view, more_images=list(rest), **fields)


@dataclass
class Dataset:
    samples: list[Sample]
    label_schema: LabelSchema
    # Rows left out under --skip-bad-rows, each with its line number.
    skipped: list[RowError] = field(default_factory=list)


@dataclass
class ExportedExample:
    """One corrected job as a row of a data set (the learning loop's export): its stored
    inputs, the image written beside the data set file, and the labels a reviewer gave."""

    id: str
    image_path: str | None  # relative to the data set file
    texts: dict[str, str | None]
    metadata: dict[str, Any]
    labels: dict[str, Any]


class DatasetOptions(BaseModel):
    """How to read a table; plugins with a fixed layout may ignore the column names."""

    model_config = ConfigDict(extra="forbid")

    image_col: str = "image"
    text_col: str = "text"
    label_cols: list[str] = Field(default_factory=lambda: ["label"])
    # Force a task kind per label column instead of inferring it from the values.
    task_kinds: dict[str, TaskKind] = Field(default_factory=dict)
    text_required: bool = False
    skip_bad_rows: bool = False
    # Column whose value groups rows that must stay on one side of a validation split
    # (a patient, an event, a customer); readers put it in `Sample.meta["group"]`.
    group_col: str | None = None


def image_slots(schema: InputSchema) -> dict[str, Any]:
    """The ModelSpec fields (max_images, image_views) that give a model one image slot per
    image a job of this input schema may carry."""
    if schema.image is None:
        return {}
    return {"max_images": schema.image.max_images, "image_views": list(schema.image.views)}


class Plugin(ABC):
    """Base class of every domain plugin."""

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    api_version: ClassVar[int] = API_VERSION
    description: ClassVar[str] = ""
    intended_use: ClassVar[str] = ""
    # Photos are decoded at reduced size when the format allows (JPEG): the short side is
    # kept >= this many pixels. Plugins that read small print (OCR) may raise it.
    decode_side: ClassVar[int | None] = 512

    # -- declarations -------------------------------------------------------------------
    @abstractmethod
    def label_schema(self) -> LabelSchema | None:
        """The tasks and labels; None when they come from the data (the generic plugin)."""

    @abstractmethod
    def input_schema(self) -> InputSchema:
        """Which modalities, image formats and text fields a job may carry."""

    def default_model_spec(self) -> ModelSpec:
        schema = self.input_schema()
        return ModelSpec(text_inputs=schema.text_names, **image_slots(schema))

    def training_defaults(self) -> TrainConfig:
        return TrainConfig()

    # -- uploads ------------------------------------------------------------------------
    def accepted_media_types(self) -> tuple[str, ...]:
        """The media types an uploaded image may be: those the input schema declares."""
        image = self.input_schema().image
        return tuple(image.media_types) if image is not None else ()

    def check_image_format(self, data: bytes, *, max_pixels: int) -> str:
        """Sniff an uploaded image's real format from its bytes and check it can be read.

        Returns its media type (one of `accepted_media_types()`); raises InputError: 415
        for a format not accepted, 413 for too many pixels, 422 for corrupt data. Called
        by the API before `sanitize` and before anything is stored, so it must be cheap
        and torch-free. The default reads what PIL reads (PNG, JPEG, WebP...); a plugin
        with formats of its own (DICOM) checks those and leaves the rest to this.
        """
        from twinlens.contract.uploads import check_picture

        return check_picture(data, self.accepted_media_types(), max_pixels=max_pixels)

    # -- preprocessing ------------------------------------------------------------------
    def load_image(self, data: bytes, media_type: str | None = None) -> "Image.Image":
        """Decode image bytes (EXIF orientation honoured, pixel limit enforced)."""
        from twinlens.contract.images import decode_image

        return decode_image(data, target_size=self.decode_side)

    def clean_text(self, name: str, text: str | None) -> str | None:
        """Normalise one text input (plugins scrub PHI, strip signatures...)."""
        if text is None:
            return None
        text = " ".join(text.split())
        return text or None

    def sanitize(self, raw: RawInput) -> RawInput:
        """Remove what must never be stored (e.g. PHI in DICOM headers) from a job's inputs.

        Called by the API after validation and before anything is written; only what it
        returns is stored. Torch-free, runs in the API process. Default: unchanged.
        """
        return raw

    def prepare(self, raw: RawInput) -> Sample:
        """Turn a job's raw inputs into a Sample; raises InputError naming the bad field.

        In the service the inputs are what `sanitize` returned (the API stores nothing
        else); from the CLI they are as read from disk. So prepare must not rely on
        sanitize having run, nor repeat its work where sanitize is expensive.
        """
        from twinlens.contract.errors import InputError

        images = [self.load_image(item.data, item.media_type) for item in raw.images]
        texts = {name: self.clean_text(name, raw.texts.get(name)) for name in self.input_schema().text_names}
        sample = Sample.of_images(images, [item.view for item in raw.images], texts=texts, meta=dict(raw.metadata))
        if not images and not any(sample.has(name) for name in texts):
            raise InputError("inputs", "neither an image nor any text was given")
        return sample

    # -- data ---------------------------------------------------------------------------
    @abstractmethod
    def read_dataset(self, path: Path, options: DatasetOptions | None = None) -> Dataset:
        """Read a data set in one of the plugin's documented formats.

        Bad rows are collected and raised together as DatasetError unless
        `options.skip_bad_rows`, in which case they are returned in `Dataset.skipped`.
        """

    @abstractmethod
    def make_sample_dataset(self, out_dir: Path, n: int = 200, seed: int = 0) -> Path:
        """Write a small generated data set; return the path `read_dataset` takes."""

    # The file name of a data set this plugin reads, as the learning loop writes it.
    export_file_name: ClassVar[str] = "manifest.jsonl"

    def export_row(self, example: ExportedExample) -> dict[str, Any]:
        """One JSON line of a data set `read_dataset` reads back (the learning loop's
        export of corrected jobs). Default: the JSONL manifest (contract/manifest.py):
        id, image path, one column per text input and per task, the metadata columns."""
        return {**example.metadata, "id": example.id, "image": example.image_path, **example.texts, **example.labels}

    # -- decision -----------------------------------------------------------------------
    def decision_model(self) -> type[DecisionBase] | None:
        """The pydantic model of what `decide` returns (a `DecisionBase` subclass), or None
        when the decision has no fixed shape. Given, it is published in the OpenAPI
        document and `decide`'s output is validated against it in conformance checks."""
        return None

    @abstractmethod
    def decide(self, prediction: Prediction) -> dict[str, Any]:
        """Model outputs -> the domain decision. Must include `needs_review` (bool) and,
        when it is true, `review_reason` (str). JSON-serialisable."""

    def describe(self) -> dict[str, Any]:
        """The plugin as JSON: what `GET /v1/plugins/{name}` and `twinlens plugins` show."""
        schema = self.label_schema()
        return {
            "name": self.name,
            "version": self.version,
            "api_version": self.api_version,
            "description": self.description,
            "intended_use": self.intended_use,
            "label_schema": schema.model_dump() if schema else None,
            "input_schema": self.input_schema().model_dump(),
        }
