"""Model commands (the operator's, on the database directly): `twinlens models
list|register|promote|rollback|history`.

`--tenant NAME` acts within that tenant (its models, its holdout, its history) with a
platform admin's rights; without it a command acts on the global models. Promotion runs
the evaluation gate exactly as `POST /v1/models/{id}/promote` does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from twinlens.cli import app
from twinlens.cli.common import fail, user_errors
from twinlens.settings import Settings

models_app = typer.Typer(help="Model versions: list, register, promote through the gate, roll back, history.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

TenantOption = Annotated[str | None, typer.Option("--tenant", help="Act within this tenant (default: the global scope).")]


def settings_or_fail() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic ValidationError and UnsafeSettingsError
        fail(str(exc))


@contextmanager
def operator_session(settings: Settings) -> Iterator[Any]:
    """A unit of work on the configured database; committed when the block ends cleanly."""
    from twinlens import queue
    from twinlens.db.session import Database

    queue.configure(settings.broker_url)  # runs submitted here are published to the broker
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()


def tenant_principal(session, name: str | None):
    """The operator acting within tenant `name` (None: the global scope, no principal)."""
    if name is None:
        return None
    from twinlens.db.repositories import TenantRepository
    from twinlens.services.keys import Principal

    tenant = TenantRepository(session).by_name(name)
    if tenant is None:
        fail(f"no tenant {name!r}")
    return Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=None, is_admin=True, is_platform_admin=True)


def model_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{value!r} is not a model id (a UUID, see `twinlens models list`)")


@models_app.command("list")
@user_errors
def models_list(
    plugin: Annotated[str | None, typer.Option(help="Only this plugin's models.")] = None,
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The models the tenant may use (its own and the global ones), newest first, with
    their aliases (champion, challenger)."""
    from twinlens.db.repositories import ModelRepository
    from twinlens.services.learning_models import aliases_of

    with operator_session(settings_or_fail()) as session:
        principal = tenant_principal(session, tenant)
        repo = ModelRepository(session)
        rows = repo.visible_to(principal.tenant_id, plugin) if principal else [
            m for m in repo.visible_to(uuid.uuid4(), plugin) if m.tenant_id is None]
        listed = [{"id": str(m.id), "version": m.version, "scope": "global" if m.tenant_id is None else "tenant",
                   "active": m.is_active, "aliases": sorted(aliases_of(session, m)), "created_at": m.created_at.isoformat()}
                  for m in rows]
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    for row in listed:
        marks = ", ".join(row["aliases"]) or ("active" if row["active"] else "")
        typer.echo(f"{row['id']}  {row['version']:<40} {row['scope']:<7} {marks}")


@models_app.command("register")
@user_errors
def models_register(
    bundle: Annotated[str, typer.Argument(help="The bundle folder.")],
    tenant: TenantOption = None,
    activate: Annotated[bool, typer.Option("--activate", help="Make it the champion now (no gate).")] = False,
) -> None:
    """Register a bundle (its hashes and plugin checked); prints the new model's id."""
    from twinlens.services import models

    with operator_session(settings_or_fail()) as session:
        principal = tenant_principal(session, tenant)
        model = models.register_bundle(session, principal, bundle, scope="tenant" if principal else "global", activate=activate)
        typer.echo(f"{model.id}  {model.version}{' (active)' if activate else ''}")


@models_app.command("promote")
@user_errors
def models_promote(
    model: Annotated[str, typer.Argument(help="The candidate's model id.")],
    tenant: TenantOption = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate fails (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Recorded in the activation history.")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="Override a gate setting for this promotion, e.g. --threshold min_delta=0.02 (repeatable).")] = None,
) -> None:
    """Run the evaluation gate against the champion; promote the candidate if it passes.
    Prints every check; exits 1 when the gate blocks it."""
    from twinlens.services import learning_models

    settings = settings_or_fail()
    overrides = _thresholds(threshold)
    with operator_session(settings) as session:
        principal = tenant_principal(session, tenant)
        request = learning_models.PromotionRequest(force=force, reason=reason, thresholds=overrides)
        promotion = learning_models.promote(session, principal, model_id(model), request, settings,
                                            tenant_id=principal.tenant_id if principal else None)
        checks, promoted = promotion.report.checks, promotion.promoted
    for check in checks:
        typer.echo(f"  [{'pass' if check['passed'] else 'FAIL'}] {check['name']}: {check['detail']}")
    if not promoted:
        fail("the evaluation gate blocked this promotion (--force --reason ... to override)", code=1)
    typer.echo(f"promoted {model}{' (forced past the gate)' if force and not all(c['passed'] for c in checks) else ''}")


def _thresholds(values: list[str] | None) -> dict[str, Any] | None:
    from twinlens.cli.common import parse_pairs

    pairs = parse_pairs(values, "--threshold")
    parsed: dict[str, Any] = {}
    for name, text in pairs.items():
        try:
            parsed[name] = float(text) if name not in ("primary_metric", "task") else text
        except ValueError:
            fail(f"--threshold {name}={text}: not a number")
    return parsed or None


@models_app.command("rollback")
@user_errors
def models_rollback(
    model: Annotated[str, typer.Argument(help="The current champion's model id.")],
    tenant: TenantOption = None,
    reason: Annotated[str | None, typer.Option(help="Recorded in the activation history.")] = None,
) -> None:
    """Make the champion before this one the champion again."""
    from twinlens.services import learning_models

    with operator_session(settings_or_fail()) as session:
        restored = learning_models.rollback(session, tenant_principal(session, tenant), model_id(model), reason)
        typer.echo(f"champion is {restored.id} ({restored.version}) again")


@models_app.command("history")
@user_errors
def models_history(
    plugin: Annotated[str, typer.Option(help="The plugin whose champions to list.")],
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every change of champion in the tenant's (or the global) scope, newest first."""
    from twinlens.db.repositories.learning import LearningRepository, scope_key

    with operator_session(settings_or_fail()) as session:
        principal = tenant_principal(session, tenant)
        steps = LearningRepository(session).history(scope_key(principal.tenant_id if principal else None), plugin)
        rows = [{"at": s.created_at.isoformat(), "action": s.action, "model_id": str(s.model_version_id),
                 "previous_model_id": str(s.previous_model_version_id) if s.previous_model_version_id else None,
                 "forced": s.forced, "reason": s.reason, "gate_report_id": str(s.gate_report_id) if s.gate_report_id else None}
                for s in steps]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        forced = " FORCED" if row["forced"] else ""
        typer.echo(f"{row['at']}  {row['action']:<8}{forced} {row['model_id']} (was {row['previous_model_id']})"
                   f"{'  ' + row['reason'] if row['reason'] else ''}")
