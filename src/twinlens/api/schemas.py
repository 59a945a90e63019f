"""Request bodies: what the API parses, and how a body becomes a service's request.

Response shapes live in services.views (see its docstring for why): this module holds
nothing the API answers with.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twinlens.contract.errors import InputError
from twinlens.contract.plugin import DatasetOptions
from twinlens.services.alignment import AlignRequest
from twinlens.services.search import SearchFilters, SearchRequest
from twinlens.services.training import TrainingRequest

LabelValue = str | list[str] | float


VIEW_DESCRIPTION = "Optional: the view this image is (one of the plugin's `input_schema.image.views`, e.g. lateral)"


class ImageBase64(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    base64: str = Field(description="The image bytes, base64-encoded")
    media_type: str | None = Field(None, max_length=100, description="Optional; the bytes are sniffed anyway")
    view: str | None = Field(None, min_length=1, max_length=100, description=VIEW_DESCRIPTION)


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    url: str = Field(max_length=2048, description="http(s) URL fetched by the server (public addresses only)")
    view: str | None = Field(None, min_length=1, max_length=100, description=VIEW_DESCRIPTION)


class JobInputs(BaseModel):
    """`image` plus the plugin's named texts (e.g. `text`, `ocr`; see GET /v1/plugins/{name})."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, str | None] = Field(init=False)

    image: ImageBase64 | ImageUrl | None = None
    images: list[ImageBase64 | ImageUrl] | None = Field(
        None, min_length=1, max_length=16,
        description="Several images of one case (a ticket's photos, a study's views), in order; at most the "
                    "plugin's `input_schema.image.max_images`. Send `image` or `images`, not both.")


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    inputs: JobInputs
    metadata: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = Field(None, max_length=2048, description="POSTed a signed event when the job finishes")


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    labels: dict[str, LabelValue] = Field(
        default_factory=dict, description="Corrected label per task: a label, a list of labels, or a number"
    )
    comment: str | None = Field(None, max_length=5000)
    author: str | None = Field(None, max_length=200)


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    bundle_path: str = Field(min_length=1, max_length=4096, description="A bundle directory readable by the server and workers")
    scope: Literal["global", "tenant"] | None = Field(
        None, description="Who may use it: the caller's tenant (the default for a tenant admin) or every tenant "
                          "(global: platform admins only, and their default)")
    activate: bool = False


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tenant: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                               description="Default: the caller's tenant; another tenant needs a platform admin key")
    admin: bool = Field(False, description="A tenant admin key: its tenant's keys, models and training")
    name: str = Field("", max_length=100)


# -- training runs ---------------------------------------------------------------------------

class TrainingRunCreate(BaseModel):
    """Train a model on data the server (and its training workers) can read."""

    model_config = ConfigDict(extra="forbid", strict=True)
    plugin: str = Field(min_length=1, max_length=100, description="Registered plugin name, e.g. generic")
    data_path: str = Field(min_length=1, max_length=4096, description="Absolute path of training data in a format the plugin reads")
    output_dir: str = Field(
        min_length=1, max_length=4096,
        description="Absolute path of the bundle folder to write: new, empty, or an earlier bundle (it is replaced)",
    )
    scope: Literal["global", "tenant"] | None = Field(
        None, description="Who may use the registered model: the caller's tenant (a tenant admin's default) or every "
                          "tenant (global: platform admins only, and their default)")
    epochs: int | None = Field(None, ge=1, le=10_000)
    batch_size: int | None = Field(None, ge=1, le=65_536)
    seed: int | None = Field(None, ge=0)
    fusion: str | None = Field(None, min_length=1, max_length=100, description="Fusion strategy, e.g. concat, gated, cross_attention")
    modalities: list[str] | None = Field(None, min_length=1, max_length=16, description='e.g. ["image"] for an image-only model')
    image_encoder: str | None = Field(None, min_length=1, max_length=200, description="timm model name")
    text_encoder: str | None = Field(None, min_length=1, max_length=4096, description="Hugging Face model name or local folder")
    model_spec: dict[str, Any] | None = Field(
        None, description="ModelSpec fields (partial or full) merged over the plugin's default; the options above win"
    )
    train_config: dict[str, Any] | None = Field(None, description="TrainConfig fields merged over the plugin's training defaults")
    dataset: DatasetOptions | None = Field(None, description="How to read a table: column names, task kinds, bad-row policy")
    preset: Literal["auto", "network"] = Field(
        "auto", description="auto: baselines, zero-shot and a network within time_limit_seconds; the best or their ensemble ships. "
                            "network: one network exactly as configured")
    time_limit_seconds: float = Field(300.0, ge=10, le=86_400, description="About how long the auto preset may train")

    def to_training_request(self) -> TrainingRequest:
        # Only the dataset options actually sent: unset ones keep the plugin reader's defaults.
        dataset = self.dataset.model_dump(exclude_unset=True) if self.dataset is not None else {}
        return TrainingRequest(**self.model_dump(exclude={"dataset"}), dataset=dataset)


class WebhookSecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    overlap_seconds: float | None = Field(
        None, ge=0, le=30 * 24 * 3600,
        description="How long the old secret keeps signing deliveries next to the new one (default: the "
                    "webhook_secret_overlap_seconds setting, 24 hours); 0 retires it at once")


# -- the learning loop ----------------------------------------------------------------------


class CorrectionExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plugin: str = Field(min_length=1, max_length=100)
    output_dir: str = Field(min_length=1, max_length=4096, description="A new or empty folder inside the output roots")
    since: str | None = Field(None, max_length=64, description="Corrections given since this date (YYYY-MM-DD) or ISO time")


class HoldoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plugin: str = Field(min_length=1, max_length=100)
    data_path: str | None = Field(None, min_length=1, max_length=4096, description=(
        "A labelled data set inside the data roots; omitted: freeze the corrections reserved so far"))


class CorrectionsTrainingRunCreate(TrainingRunCreate):
    """Train on a base data set plus the tenant's corrections (held-out ones excluded)."""

    since: str | None = Field(None, max_length=64, description="Only corrections given since (YYYY-MM-DD or ISO time)")
    combine: Literal["weighted", "deduplicated"] = Field(
        "deduplicated", description="deduplicated: a correction replaces base rows with the same inputs; weighted: each "
                                    "correction is added correction_weight times")
    correction_weight: int = Field(2, ge=1, le=100)
    spec_from: Literal["plugin", "champion"] = Field("plugin", description="Start from the plugin's model spec or the champion's")
    shuffle_labels: bool = Field(False, description="A control: labels dealt out at random (a model the gate must block)")
    evaluate: bool = Field(True, description="Measure the candidate and the champion on the holdout once trained")

    def to_loop_request(self):
        from twinlens.services.learning import LoopTrainingRequest

        own = ("since", "combine", "correction_weight", "spec_from", "shuffle_labels", "evaluate")
        dataset = self.dataset.model_dump(exclude_unset=True) if self.dataset is not None else {}
        base = TrainingRequest(**self.model_dump(exclude={"dataset", *own}), dataset=dataset)
        return LoopTrainingRequest(plugin=self.plugin, data_path=self.data_path, output_dir=self.output_dir, base=base,
                                   **{name: getattr(self, name) for name in own})


class GateThresholdsBody(BaseModel):
    """Overrides of the gate's settings for one request (unset: the TWINLENS_GATE_* value)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    primary_metric: Literal["macro_f1", "accuracy"] | None = None
    task: str | None = Field(None, max_length=100)
    min_metric: float | None = Field(None, ge=0, le=1)
    min_delta: float | None = Field(None, ge=-1, le=1)
    max_recall_drop: float | None = Field(None, ge=0, le=1)
    max_ece: float | None = Field(None, ge=0, le=1)
    max_latency_factor: float | None = Field(None, gt=0, le=1000)


class GateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    thresholds: GateThresholdsBody | None = None


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    force: bool = Field(False, description="Promote even if the gate fails (a reason is then required)")
    reason: str | None = Field(None, max_length=2000, description="Recorded in the activation history")
    thresholds: GateThresholdsBody | None = None


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str | None = Field(None, max_length=2000)


class ShadowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    share: float = Field(gt=0, le=1, description="Share of the scope's live jobs the challenger also runs on")


# -- similar cases and search (services/search.py) ------------------------------------------


class SearchFiltersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(None, min_length=1, max_length=200,
                              description="Only cases with this label: predicted by any head, or given in a correction")
    created_from: datetime | None = Field(None, description="Only cases submitted at or after this time")
    created_to: datetime | None = Field(None, description="Only cases submitted at or before this time")
    corrected_only: bool = Field(False, description="Only cases a reviewer corrected")

    def to_filters(self) -> SearchFilters:
        return SearchFilters(label=self.label, created_from=self.created_from, created_to=self.created_to,
                             corrected_only=self.corrected_only)


class SearchCreate(BaseModel):
    """A text or an image to find past cases with, within the caller's tenant."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(min_length=1, max_length=100, description="Whose cases: e.g. support_ticket")
    text: str | None = Field(None, min_length=1, max_length=2000, description='e.g. "a swollen battery lifting the screen"')
    image: ImageBase64 | None = Field(None, description="Find cases whose photo looks like this one")
    target: Literal["images", "cases"] | None = Field(
        None, description="For a text: the cases' photos (needs an aligned image-text space) or their texts. "
                          "Default: images when the model version has an aligned space, else cases")
    k: int = Field(10, ge=1, le=1000, description="How many cases (capped by the server)")
    model_id: uuid.UUID | None = Field(None, description="The model version whose vectors to search; default the active one")
    filters: SearchFiltersBody = Field(default_factory=SearchFiltersBody)

    def to_request(self) -> SearchRequest:
        image = None
        if self.image is not None:
            try:
                image = base64.b64decode(self.image.base64, validate=True)
            except (binascii.Error, ValueError):
                raise InputError("image.base64", "not valid base64") from None
        return SearchRequest(plugin=self.plugin, text=self.text, image=image,
                             media_type=self.image.media_type if self.image is not None else None, target=self.target,
                             k=self.k, filters=self.filters.to_filters(), model_id=self.model_id)


class AlignmentCreate(BaseModel):
    """Train an aligned image-text space for a model version on the tenant's (photo, text) pairs."""

    model_config = ConfigDict(extra="forbid")
    data_path: str = Field(min_length=1, max_length=4096, description="Absolute path of a data set the plugin reads (photos and texts)")
    output_dir: str = Field(min_length=1, max_length=4096, description="Absolute path of the folder the space is written to")
    model_id: uuid.UUID | None = Field(None, description="The model version to align; default the plugin's active one")
    text_field: str | None = Field(None, max_length=100, description="The text input to align with the photos; default the first")
    dim: int = Field(64, ge=2, le=1024, description="Dimensions of the shared space")
    epochs: int = Field(200, ge=1, le=10_000)

    def to_request(self, plugin: str) -> AlignRequest:
        return AlignRequest(plugin=plugin, data_path=self.data_path, output_dir=self.output_dir, model_id=self.model_id,
                            text_field=self.text_field, dim=self.dim, epochs=self.epochs)
