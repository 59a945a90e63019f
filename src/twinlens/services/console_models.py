"""The console's models page: per plugin, the versions a tenant admin can see with their
metrics, and the champion (the version new jobs of the tenant use)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from twinlens.db.models import ModelVersion
from twinlens.db.repositories import ModelRepository
from twinlens.services import models
from twinlens.services.keys import Principal


@dataclass
class PluginModels:
    plugin: str
    champion: ModelVersion | None
    versions: list[ModelVersion]
    metric_rows: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)  # version id -> headline metrics


def model_overview(session: Session, principal: Principal) -> list[PluginModels]:
    """Tenant admins only: the same versions GET /v1/models lists, grouped by plugin."""
    principal.require_admin()
    grouped: dict[str, list[ModelVersion]] = {}
    for model in models.list_models(session, principal):
        grouped.setdefault(model.plugin, []).append(model)
    repo = ModelRepository(session)
    overview = []
    for plugin, versions in sorted(grouped.items()):
        entry = PluginModels(plugin, repo.active(plugin, principal.tenant_id), versions)
        entry.metric_rows = {str(model.id): headline_metrics(model.metrics or {}) for model in versions}
        overview.append(entry)
    return overview


def headline_metrics(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """Per head its held-out accuracy, macro-F1, calibration error (or MAE) and rows: the
    automatic recipe keeps them under `validation`, a single network at the top level.
    The full report stays in the bundle."""
    report = metrics.get("validation") if isinstance(metrics.get("validation"), dict) else metrics
    rows: list[tuple[str, Any]] = []
    for head, values in (report.get("heads") or {}).items():
        if not isinstance(values, dict):
            continue
        for name in ("accuracy", "macro_f1", "ece", "mae", "n"):
            if isinstance(values.get(name), (int, float)):
                rows.append((f"{head} {name.replace('_', '-')}", values[name]))
    return rows


def plugins_with_a_model(session: Session, principal: Principal, names: list[str]) -> list[str]:
    """Of the installed plugins, those a new job of this tenant can run on (an active model)."""
    repo = ModelRepository(session)
    return [name for name in names if repo.active(name, principal.tenant_id) is not None]
