"""Label and input schemas: typed, serialisable declarations a plugin makes.

Torch-free on purpose: the API serves these schemas without loading the engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskKind = Literal["multiclass", "multilabel", "regression"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Label(_Frozen):
    name: str
    # Plain-language description: shown to users and used for zero-shot cold start.
    description: str = ""


class Task(_Frozen):
    """One prediction head: e.g. `fault` (multiclass) or `findings` (multilabel)."""

    name: str
    kind: TaskKind
    labels: tuple[Label, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _check_labels(self) -> "Task":
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name!r} has duplicate label names")
        if self.kind == "regression" and self.labels:
            raise ValueError(f"regression task {self.name!r} takes no labels")
        if self.kind == "multiclass" and len(self.labels) < 2:
            raise ValueError(f"multiclass task {self.name!r} needs at least two labels")
        if self.kind == "multilabel" and len(self.labels) < 1:
            raise ValueError(f"multilabel task {self.name!r} needs at least one label")
        return self

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def output_size(self) -> int:
        """Width of this task's head output."""
        return 1 if self.kind == "regression" else len(self.labels)


class LabelSchema(_Frozen):
    tasks: tuple[Task, ...]

    @model_validator(mode="after")
    def _unique_tasks(self) -> "LabelSchema":
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("duplicate task names in label schema")
        return self

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]


class ImageInput(_Frozen):
    required: bool = False
    # Media types accepted, e.g. image/jpeg, image/png, application/dicom.
    media_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")
    description: str = ""
    # How many images one case may carry (a ticket's photos, a study's views); more is a
    # 422 naming this limit. 1 keeps the single-image behaviour (and model) of old.
    max_images: int = Field(default=1, ge=1, le=16)
    # Named views, in slot order (chest_xray: frontal, lateral): an image sent as one of
    # them takes that view's slot; unnamed images fill the free slots in order.
    views: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check_views(self) -> "ImageInput":
        if len(set(self.views)) != len(self.views):
            raise ValueError("duplicate image view names")
        if len(self.views) > self.max_images:
            raise ValueError(f"{len(self.views)} image views but max_images is {self.max_images}")
        return self


class TextField(_Frozen):
    name: str
    required: bool = False
    description: str = ""
    max_chars: int = 20_000


class MetadataField(_Frozen):
    name: str
    type: Literal["string", "number", "boolean", "date"] = "string"
    description: str = ""
    choices: tuple[str, ...] = ()


class InputSchema(_Frozen):
    """What a job for this plugin may carry. At least one of image/text must be present."""

    image: ImageInput | None = Field(default_factory=ImageInput)
    texts: tuple[TextField, ...] = (TextField(name="text"),)
    metadata: tuple[MetadataField, ...] = ()

    @property
    def text_names(self) -> list[str]:
        return [field.name for field in self.texts]
