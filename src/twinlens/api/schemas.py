"""Request bodies and API-only response shapes (job/model/feedback views live in
services.views, shared with webhook payloads)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twinlens.services.views import ApiKeyView, DeliveryView, FeedbackView, ModelVersionView

LabelValue = str | list[str] | float


class ImageBase64(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    base64: str = Field(description="The image bytes, base64-encoded")
    media_type: str | None = Field(None, max_length=100, description="Optional; the bytes are sniffed anyway")


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    url: str = Field(max_length=2048, description="http(s) URL fetched by the server (public addresses only)")


class JobInputs(BaseModel):
    """`image` plus the plugin's named texts (e.g. `text`, `ocr`; see GET /v1/plugins/{name})."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, str | None] = Field(init=False)

    image: ImageBase64 | ImageUrl | None = None


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


class FeedbackList(BaseModel):
    data: list[FeedbackView]


class DeliveryList(BaseModel):
    data: list[DeliveryView]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    bundle_path: str = Field(min_length=1, max_length=4096, description="A bundle directory readable by the server and workers")
    scope: Literal["global", "tenant"] = "global"
    activate: bool = False


class ModelList(BaseModel):
    data: list[ModelVersionView]


class PluginView(BaseModel):
    name: str
    version: str | None = None
    api_version: int | None = None
    description: str = ""
    intended_use: str = ""
    label_schema: dict[str, Any] | None = None
    input_schema: dict[str, Any] | None = None
    error: str | None = Field(None, description="Set when the installed plugin is broken")


class PluginList(BaseModel):
    data: list[PluginView]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tenant: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    admin: bool = False
    name: str = Field("", max_length=100)


class CreatedKey(ApiKeyView):
    key: str = Field(description="The API key; shown once, stored only as a hash")


class KeyList(BaseModel):
    data: list[ApiKeyView]


class TenantView(BaseModel):
    id: uuid.UUID
    name: str
    webhook_secret: str = Field(description="Verifies this tenant's webhooks (Standard Webhooks, whsec_...)")


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
    time: datetime | None = None
