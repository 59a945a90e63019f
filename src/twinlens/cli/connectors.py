"""Helpdesk connector commands: `twinlens connectors configure | list | import`.

Like `keys create`, they work where the database is at hand (the operator's), for a named
tenant. Credentials come from a JSON file (`--credentials-file`) or `--credential
name=value` (which a shell history keeps: prefer the file); they are sealed with the
service's secrets key and never printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from twinlens.cli import app
from twinlens.cli.common import (
    UsageProblem,
    fail,
    parse_pairs,
    read_json_file,
    split_list,
    user_errors,
)
from twinlens.settings import Settings

connectors_app = typer.Typer(help="Helpdesk connectors (Zendesk, Freshdesk): docs/connectors/.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic ValidationError and UnsafeSettingsError
        fail(str(exc))


def _database(settings: Settings):
    from twinlens.db.session import Database

    return Database(settings.resolved_database_url)


@connectors_app.command("configure")
@user_errors
def connectors_configure(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the connector belongs to.")],
    name: Annotated[str, typer.Option("--name", help="The connector's name (an existing one of this name is changed).")],
    kind: Annotated[Optional[str], typer.Option("--kind", help="zendesk, freshdesk, or an installed connector.")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="The helpdesk's base URL, e.g. https://acme.zendesk.com.")] = None,
    plugin: Annotated[Optional[str], typer.Option("--plugin", help="The plugin that decides, e.g. support_ticket.")] = None,
    credentials_file: Annotated[Optional[Path], typer.Option("--credentials-file", help="A JSON object of credentials.")] = None,
    credential: Annotated[Optional[list[str]], typer.Option("--credential", help="name=value (repeatable).")] = None,
    field: Annotated[Optional[list[str]], typer.Option("--field", help="decision_key=helpdesk_field (repeatable).")] = None,
    tag_prefix: Annotated[Optional[str], typer.Option(help="Prefix of the tags written (default twinlens_).")] = None,
    review_tag: Annotated[Optional[str], typer.Option(help="Tag added when a decision needs review ('' for none).")] = None,
    review_group: Annotated[Optional[str], typer.Option(help="Group id a ticket that needs review moves to.")] = None,
    attachment_host: Annotated[Optional[list[str]], typer.Option("--attachment-host", help="Another host attachments may come "
                                                                                           "from (repeatable, or a comma list).")] = None,
    write_back: Annotated[Optional[bool], typer.Option("--write-back/--no-write-back", help="Write decisions onto tickets.")] = None,
) -> None:
    """Create or change a tenant's connector; prints it as JSON (never its credentials)."""
    from twinlens.services import connectors
    from twinlens.services.webhook_secrets import secret_box

    credentials = _credentials(credentials_file, credential)
    options = connectors.ConnectorOptions(
        kind=kind, name=name, base_url=url, plugin=plugin, credentials=credentials,
        fields=parse_pairs(field, "--field") if field else None, tag_prefix=tag_prefix, review_tag=review_tag,
        review_group=review_group, attachment_hosts=split_list(attachment_host) if attachment_host else None, write_back=write_back,
    )
    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            principal = connectors.operator_for(session, tenant)
            row, created = connectors.configure(session, principal, secret_box(settings), options)
            view = connectors.connector_view(row)
    finally:
        database.dispose()
    typer.echo(view.model_dump_json())
    typer.echo(f"({'created' if created else 'changed'}; point the helpdesk's webhook at {view.intake_path})", err=True)


def _credentials(path: Path | None, pairs: list[str] | None) -> dict[str, str] | None:
    if path is None and not pairs:
        return None
    found: dict[str, str] = {}
    if path is not None:
        loaded = read_json_file(path, "credentials file")
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise UsageProblem(f"credentials file {path}: expected a JSON object of strings")
        found.update(loaded)
    found.update(parse_pairs(pairs, "--credential"))
    return found


@connectors_app.command("list")
@user_errors
def connectors_list(tenant: Annotated[str, typer.Option("--tenant", help="The tenant whose connectors to list.")]) -> None:
    """The tenant's connectors, one JSON object a line (never their credentials)."""
    from twinlens.services import connectors

    settings = _settings()
    database = _database(settings)
    try:
        with database.session() as session:
            principal = connectors.operator_for(session, tenant)
            lines = [connectors.connector_view(row).model_dump_json() for row in connectors.list_connectors(session, principal)]
    finally:
        database.dispose()
    for line in lines:
        typer.echo(line)


@connectors_app.command("import")
@user_errors
def connectors_import(
    connector: Annotated[str, typer.Argument(help="The connector's id or name.")],
    tenant: Annotated[str, typer.Option("--tenant", help="The connector's tenant.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for tickets.jsonl and attachments/.")],
    last: Annotated[int, typer.Option("--last", min=1, max=10_000, help="How many of the latest closed tickets.")] = 500,
) -> None:
    """Back-fill: the latest closed tickets with their resolution fields as a support_ticket
    training export (tickets.jsonl + attachments/), for `twinlens train --data OUT`."""
    from twinlens.services.connectors_import import backfill

    settings = _settings()
    database = _database(settings)
    try:
        report = backfill(database, settings, tenant, connector, out, last)
    finally:
        database.dispose()
    typer.echo(json.dumps(report.as_dict()))
