"""The console's models page: per plugin, the versions a tenant admin can see with their
metrics, the champion (what new jobs of the tenant use), the challenger in shadow with its
shadow results, each version's gate reports, the activation history; and the page's
promote / roll back / shadow actions. The learning loop's own services do the work
(services/learning_models.py, services/shadow.py); this module only gathers and calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from twinlens.db.learning_tables import GateReport, ModelActivation
from twinlens.db.models import ModelVersion
from twinlens.db.repositories import ModelRepository
from twinlens.services import learning_models, models, shadow
from twinlens.services.keys import Principal
from twinlens.settings import Settings

REPORTS_SHOWN = 3
HISTORY_SHOWN = 10


@dataclass
class VersionRow:
    model: ModelVersion
    metrics: list[tuple[str, Any]]
    is_champion: bool
    shadow_share: float | None  # set while the version is its scope's challenger
    shadow: dict[str, Any] | None  # shadow results (agreement, accuracy on corrected jobs, latency) when it has any
    gate_reports: list[GateReport]
    manageable: bool  # this key may promote / roll back / shadow it


@dataclass
class PluginModels:
    plugin: str
    champion: ModelVersion | None
    versions: list[VersionRow]
    history: list[ModelActivation] = field(default_factory=list)


def model_overview(session: Session, principal: Principal) -> list[PluginModels]:
    """Tenant admins only: the same versions GET /v1/models lists, grouped by plugin."""
    principal.require_admin()
    grouped: dict[str, list[ModelVersion]] = {}
    for model in models.list_models(session, principal):
        grouped.setdefault(model.plugin, []).append(model)
    repo = ModelRepository(session)
    overview = []
    for plugin, versions in sorted(grouped.items()):
        champion = repo.active(plugin, principal.tenant_id)
        rows = [_row(session, principal, model, champion) for model in versions]
        steps = learning_models.history(session, principal, plugin, "tenant") + learning_models.history(session, principal, plugin, "global")
        steps.sort(key=lambda step: step.created_at, reverse=True)
        overview.append(PluginModels(plugin, champion, rows, steps[:HISTORY_SHOWN]))
    return overview


def _row(session: Session, principal: Principal, model: ModelVersion, champion: ModelVersion | None) -> VersionRow:
    aliases = learning_models.aliases_of(session, model)
    share = aliases["challenger"]["shadow_share"] if "challenger" in aliases else None
    results = shadow.summary(session, principal, model.id)
    reports = sorted(learning_models.reports_of(session, principal, model.id), key=lambda r: r.created_at, reverse=True)
    return VersionRow(
        model=model, metrics=headline_metrics(model.metrics or {}), is_champion=champion is not None and champion.id == model.id,
        shadow_share=share, shadow=results if results["jobs"] or results["in_shadow"] else None,
        gate_reports=reports[:REPORTS_SHOWN], manageable=principal.may_act_on(model.tenant_id),
    )


def promote(session: Session, principal: Principal, model_id: uuid.UUID, settings: Settings, *, force: bool,
            reason: str | None) -> learning_models.Promotion:
    """Through the evaluation gate (or past it, forced with a reason). A blocked promotion
    returns its report, which the caller commits like the API does."""
    request = learning_models.PromotionRequest(force=force, reason=reason)
    return learning_models.promote(session, principal, model_id, request, settings)


def rollback(session: Session, principal: Principal, model_id: uuid.UUID, reason: str | None) -> ModelVersion:
    return learning_models.rollback(session, principal, model_id, reason)


def set_shadow(session: Session, principal: Principal, model_id: uuid.UUID, share: float | None) -> None:
    """Start shadowing with `share` of live jobs, or stop (None)."""
    if share is None:
        learning_models.stop_shadow(session, principal, model_id)
    else:
        learning_models.start_shadow(session, principal, model_id, share)


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
