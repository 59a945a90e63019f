"""The `generic` plugin: any table of image + text + label columns.

Its labels come from the data (one task per label column), so `label_schema()` is None
and a trained bundle carries the schema it learnt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

import twinlens
from twinlens.contract.decision import DecisionBase
from twinlens.contract.manifest import DEFAULT_KEEP_IMAGE_SIDE, read_manifest
from twinlens.contract.plugin import Dataset, DatasetOptions, Plugin
from twinlens.contract.prediction import HeadPrediction, Prediction
from twinlens.contract.schema import ImageInput, InputSchema, LabelSchema, TextField
from twinlens.generic.sample_data import make_sample_dataset

DEFAULT_REVIEW_THRESHOLD = 0.6
REVIEW_THRESHOLD_ENV = "TWINLENS_GENERIC_REVIEW_THRESHOLD"
TOP_K = 3
# Images one case may carry; a model gets as many slots as its training cases had.
MAX_IMAGES = 4


def _threshold_from_env() -> float:
    raw = os.environ.get(REVIEW_THRESHOLD_ENV)
    if raw is None:
        return DEFAULT_REVIEW_THRESHOLD
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{REVIEW_THRESHOLD_ENV}={raw!r} is not a number") from None


class GenericDecision(DecisionBase):
    """What the generic plugin's `decide` returns: each head's answer, and whether to review."""

    heads: dict[str, dict[str, Any]] = Field(
        description="Per head: kind, then label/confidence/top (multiclass), labels/top (multilabel) or value (regression)")


class GenericPlugin(Plugin):
    name = "generic"
    version = twinlens.__version__
    description = (
        "Any data set of images and text with one or more label columns, read from JSONL "
        "or CSV; the tasks and labels are learnt from the data."
    )
    intended_use = (
        "Prototyping and domains without a dedicated plugin. Decisions are the model's top "
        "labels with a confidence-based review flag; no domain rules are applied."
    )

    def __init__(self, review_threshold: float | None = None, keep_image_side: int = DEFAULT_KEEP_IMAGE_SIDE):
        threshold = _threshold_from_env() if review_threshold is None else review_threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"review threshold must be between 0 and 1, got {threshold}")
        # A multiclass head whose top probability is below this asks for a human review.
        self.review_threshold = threshold
        self.keep_image_side = keep_image_side

    # -- declarations -------------------------------------------------------------------
    def label_schema(self) -> LabelSchema | None:
        return None

    def input_schema(self) -> InputSchema:
        return InputSchema(
            image=ImageInput(required=False, max_images=MAX_IMAGES,
                             description=f"The photos or scans of the item (up to {MAX_IMAGES})."),
            texts=(TextField(name="text", description="The text that came with the image."),),
        )

    # -- data ---------------------------------------------------------------------------
    def read_dataset(
        self, path: Path, options: DatasetOptions | None = None, *, label_schema: LabelSchema | None = None
    ) -> Dataset:
        """Read a JSONL/CSV manifest (or a folder holding manifest.jsonl or manifest.csv).

        With `label_schema` (e.g. a trained model's), labels must be ones it declares;
        without, one task per label column with its kind inferred (see contract.label_cells).
        """
        return read_manifest(
            Path(path), options, schema=label_schema, clean_text=self.clean_text, keep_image_side=self.keep_image_side
        )

    def make_sample_dataset(self, out_dir: Path, n: int = 200, seed: int = 0) -> Path:
        return make_sample_dataset(Path(out_dir), n=n, seed=seed)

    # -- decision -----------------------------------------------------------------------
    def decide(self, prediction: Prediction) -> dict[str, Any]:
        heads = {name: _head_decision(head) for name, head in prediction.heads.items()}
        reasons = [reason for head in prediction.heads.values() if (reason := self._doubt(head))]
        if prediction.zero_shot:
            reasons.append("zero-shot model: not trained on labelled examples")
        return {
            "heads": heads,
            "needs_review": bool(reasons),
            "review_reason": "; ".join(reasons) if reasons else None,
        }

    def decision_model(self) -> type[GenericDecision]:
        return GenericDecision

    def _doubt(self, head: HeadPrediction) -> str | None:
        if head.kind != "multiclass":
            return None
        confidence = _confidence(head)
        if confidence is None or confidence < self.review_threshold:
            shown = "unknown" if confidence is None else f"{confidence:.2f}"
            return f"{head.task}: top confidence {shown} is below {self.review_threshold:.2f}"
        return None


def _confidence(head: HeadPrediction) -> float | None:
    if head.confidence is not None:
        return head.confidence
    return max(head.probabilities.values()) if head.probabilities else None


def _head_decision(head: HeadPrediction) -> dict[str, Any]:
    top = [{"label": label, "probability": round(p, 4)} for label, p in head.top(TOP_K)]
    if head.kind == "multiclass":
        label = head.label or (top[0]["label"] if top else None)
        confidence = _confidence(head)
        return {"kind": "multiclass", "label": label, "confidence": None if confidence is None else round(confidence, 4), "top": top}
    if head.kind == "multilabel":
        return {"kind": "multilabel", "labels": list(head.labels), "top": top}
    return {"kind": "regression", "value": head.value}
