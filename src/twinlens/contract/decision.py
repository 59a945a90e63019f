"""The shape of a plugin's decision.

`Plugin.decide` returns a JSON dict; a plugin that also returns a model from
`decision_model()` says exactly which fields that dict has. The API publishes the model
as a named schema (so a generated client gets a typed decision per plugin) and the
conformance checks validate `decide`'s output against it, so the two cannot drift."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DecisionBase(BaseModel):
    """What every decision carries. Subclasses add the domain's fields; unknown fields are
    refused, so a key `decide` adds without declaring it fails the conformance check."""

    model_config = ConfigDict(extra="forbid")

    needs_review: bool = Field(description="A person should look at this job before acting on it")
    review_reason: str | None = Field(None, description="Why, when needs_review is true")
