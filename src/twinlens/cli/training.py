"""Training-run commands (the operator's, on the database): `twinlens training
start|list|show`, and `twinlens data export --from-feedback` (corrections as a data set).

A run started here is queued like one from `POST /v1/training-runs`: a worker serving the
`training` queue runs it (with TWINLENS_BROKER_URL set, it is published at once; without,
the embedded service's sweep picks it up).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer

from twinlens.cli import app
from twinlens.cli.common import fail, read_json_file, user_errors
from twinlens.cli.models import operator_session, settings_or_fail, tenant_principal

training_app = typer.Typer(help="Training runs on the training queue: start, list, show.", no_args_is_help=True)
data_app = typer.Typer(help="Data sets made by the service.", no_args_is_help=True)
app.add_typer(training_app, name="training")
app.add_typer(data_app, name="data")


def _tenant_or_fail(session, tenant: str):
    principal = tenant_principal(session, tenant)
    if principal is None:
        fail("give --tenant: training runs and corrections belong to a tenant")
    return principal


@training_app.command("start")
@user_errors
def training_start(
    plugin: Annotated[str, typer.Option(help="The plugin to train for.")],
    data: Annotated[Path, typer.Option("--data", help="Training data (the base data set with --from-corrections).")],
    out: Annotated[Path, typer.Option("--out", help="The bundle folder to write (new, empty, or an earlier bundle).")],
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the run (and its model) belongs to.")],
    from_corrections: Annotated[bool, typer.Option("--from-corrections", help="Add the tenant's corrections to the data.")] = False,
    since: Annotated[str | None, typer.Option(help="With --from-corrections: only those given since (YYYY-MM-DD).")] = None,
    combine: Annotated[str, typer.Option(help="deduplicated or weighted (corrections repeated --weight times).")] = "deduplicated",
    weight: Annotated[int, typer.Option(help="Copies of each correction when weighted.")] = 2,
    spec_from: Annotated[str, typer.Option("--spec-from", help="plugin or champion: whose model spec to start from.")] = "plugin",
    epochs: Annotated[int | None, typer.Option(help="Most epochs.")] = None,
    preset: Annotated[str, typer.Option(help="auto (the recipe) or network.")] = "auto",
    time_limit: Annotated[float, typer.Option("--time-limit", help="About how many seconds the recipe may train.")] = 300.0,
    model_spec: Annotated[Path | None, typer.Option("--model-spec", help="A JSON file of ModelSpec fields.")] = None,
) -> None:
    """Queue a training run; prints its id."""
    from twinlens.services import learning, training

    settings = settings_or_fail().model_copy(update={"data_roots": [Path(data).resolve().parent],
                                                     "output_roots": [Path(out).resolve().parent]})
    spec = read_json_file(model_spec, "--model-spec") if model_spec else None
    base = training.TrainingRequest(plugin=plugin, data_path=str(Path(data).resolve()), output_dir=str(Path(out).resolve()),
                                    scope="tenant", epochs=epochs, preset=preset, time_limit_seconds=time_limit, model_spec=spec)
    if combine not in ("deduplicated", "weighted") or spec_from not in ("plugin", "champion"):
        fail("--combine is deduplicated or weighted; --spec-from is plugin or champion")
    with operator_session(settings) as session:
        principal = _tenant_or_fail(session, tenant)
        if from_corrections:
            request = learning.LoopTrainingRequest(plugin=plugin, data_path=base.data_path, output_dir=base.output_dir,
                                                   since=since, combine=combine, correction_weight=weight,
                                                   spec_from=spec_from, base=base)
            run = learning.submit_corrections_run(session, principal, request, settings)
        else:
            run = training.submit_run(session, principal, base, settings)
        run_id = run.id
    typer.echo(str(run_id))


def _run_row(run) -> dict:
    return {"id": str(run.id), "plugin": run.plugin, "kind": run.request.get("kind", "standard"), "status": run.status,
            "model_id": str(run.model_version_id) if run.model_version_id else None,
            "created_at": run.created_at.isoformat(), "finished_at": run.finished_at.isoformat() if run.finished_at else None}


@training_app.command("list")
@user_errors
def training_list(
    tenant: Annotated[str, typer.Option("--tenant", help="Whose runs.")],
    plugin: Annotated[str | None, typer.Option(help="Only this plugin's runs.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """The tenant's training runs, newest first."""
    from twinlens.db.repositories import TrainingRunRepository

    with operator_session(settings_or_fail()) as session:
        principal = _tenant_or_fail(session, tenant)
        rows = [_run_row(run) for run in TrainingRunRepository(session).page(principal.tenant_id, limit=limit, plugin=plugin).rows]
    for row in rows:
        typer.echo(f"{row['id']}  {row['plugin']:<16} {row['kind']:<12} {row['status']:<10} {row['model_id'] or ''}")


@training_app.command("show")
@user_errors
def training_show(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Whose run.")],
) -> None:
    """One run as JSON: its request, status, error, metrics and model."""
    from twinlens.services import training

    try:
        wanted = uuid.UUID(run_id)
    except ValueError:
        fail(f"{run_id!r} is not a training run id")
    with operator_session(settings_or_fail()) as session:
        run = training.get_run(session, _tenant_or_fail(session, tenant), wanted)
        shown = {**_run_row(run), "request": run.request, "error": run.error, "metrics": run.metrics}
    typer.echo(json.dumps(shown, indent=2, default=str))


@data_app.command("export")
@user_errors
def data_export(
    plugin: Annotated[str, typer.Option(help="Whose jobs.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Whose corrections.")],
    out: Annotated[Path, typer.Option("--out", help="A new or empty folder for the data set.")],
    from_feedback: Annotated[bool, typer.Option("--from-feedback", help="Corrected jobs (the only source so far).")] = False,
    since: Annotated[str | None, typer.Option(help="Corrections given since this date (YYYY-MM-DD) or ISO time.")] = None,
    include_holdout: Annotated[bool, typer.Option("--include-holdout", help="Keep the held-out corrections too.")] = False,
) -> None:
    """Write corrected jobs (their stored inputs and the reviewers' labels, with the
    original prediction and model version) as a data set in the plugin's own format.
    Jobs whose inputs were purged are counted and skipped. Prints the summary as JSON."""
    from twinlens.blobs import LocalBlobStore
    from twinlens.services import learning
    from twinlens.services.learning_export import export_corrections

    if not from_feedback:
        fail("say what to export: --from-feedback")
    settings = settings_or_fail()
    blobs = LocalBlobStore(settings.resolved_blob_dir)
    with operator_session(settings) as session:
        principal = _tenant_or_fail(session, tenant)
        moment = learning.parse_since(since)
        if include_holdout:
            summary = export_corrections(session, blobs, tenant_id=principal.tenant_id, plugin_name=plugin,
                                         out_dir=Path(out).resolve(), since=moment)
        else:
            summary = learning.export_training_corrections(session, blobs, principal.tenant_id, plugin, Path(out).resolve(),
                                                           settings, since=moment)
    typer.echo(json.dumps({k: v for k, v in summary.as_dict().items() if k != "job_ids"}))
