"""Zero-shot answers from the service: a plugin whose labels have descriptions answers
jobs before any model of it is active, by similarity of the job's texts (and OCR) to the
label descriptions (engine/zero_shot.py, calibrated by engine/zero_shot_predictor.py).

Such jobs name a zero-shot model version: a global, never-activated `model_versions`
row per plugin and label schema, whose bundle path `zero-shot:<plugin>` tells workers to
build the classifier from the plugin itself (there is no bundle). Its answers are marked
`zero_shot` and always go to review. Once a trained model is activated, new jobs use it.
A plugin without label descriptions has nothing to compare with: its jobs still get 409.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.orm import Session

from twinlens.contract.plugin import Plugin
from twinlens.contract.registry import get_plugin
from twinlens.contract.schema import LabelSchema
from twinlens.db.models import ModelVersion
from twinlens.db.repositories import ModelRepository

ZERO_SHOT_PREFIX = "zero-shot:"
REVIEW_REASON = "a zero-shot answer (no model trained on labelled examples yet): check it"


def described_schema(plugin: Plugin) -> LabelSchema | None:
    """The plugin's label schema when some classification head has a description for
    every label (what zero-shot compares texts with), else None."""
    schema = plugin.label_schema()
    if schema is None:
        return None
    usable = [task for task in schema.tasks if task.kind != "regression" and task.labels
              and all(label.description for label in task.labels)]
    return schema if usable else None


def zero_shot_model(session: Session, plugin_name: str) -> ModelVersion | None:
    """The plugin's zero-shot model version (made on first use), or None without descriptions."""
    plugin = get_plugin(plugin_name)
    schema = described_schema(plugin)
    if schema is None:
        return None
    content_hash = _content_hash(plugin, schema)
    repo = ModelRepository(session)
    existing = repo.with_hash(plugin_name, None, content_hash)
    if existing is not None:
        return existing
    return repo.add(ModelVersion(
        tenant_id=None, plugin=plugin_name, version=f"{plugin_name}@zero-shot-{content_hash[:12]}",
        bundle_path=f"{ZERO_SHOT_PREFIX}{plugin_name}", content_hash=content_hash,
        label_schema=schema.model_dump(mode="json"), model_spec={}, metrics={"zero_shot": True}, is_active=False,
    ))


def is_zero_shot_path(bundle_path: str) -> bool:
    return bundle_path.startswith(ZERO_SHOT_PREFIX)


def plugin_of_path(bundle_path: str) -> str:
    return bundle_path[len(ZERO_SHOT_PREFIX):]


def require_review(decision: dict[str, Any], zero_shot: bool) -> dict[str, Any]:
    """A zero-shot answer always goes to a person, whatever the plugin's thresholds say."""
    if zero_shot and not decision.get("needs_review"):
        return {**decision, "needs_review": True, "review_reason": REVIEW_REASON}
    return decision


def _content_hash(plugin: Plugin, schema: LabelSchema) -> str:
    described = json.dumps({"plugin": plugin.name, "plugin_version": plugin.version, "kind": "zero-shot",
                            "label_schema": schema.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()
