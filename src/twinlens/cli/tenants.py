"""Tenant commands: `twinlens tenants delete NAME`.

Deleting a tenant is the operator's, done where the database is at hand: no API key, not
even a platform admin's, can delete a whole tenant over HTTP.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from twinlens.cli import app
from twinlens.cli.common import fail, user_errors
from twinlens.settings import Settings

tenants_app = typer.Typer(help="Tenants.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")


@tenants_app.command("delete")
@user_errors
def tenants_delete(
    name: Annotated[str, typer.Argument(help="The tenant's name.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a tenant and everything it owns: keys, its own models, training runs, jobs,
    results, feedback, webhook deliveries, and the stored images no other tenant's job
    uses. Prints what was deleted, as JSON."""
    from twinlens.blobs import LocalBlobStore
    from twinlens.db.session import Database
    from twinlens.services import erasure

    try:
        settings = Settings()
    except ValueError as exc:  # pydantic ValidationError and UnsafeSettingsError
        fail(str(exc))
    if not yes:
        typer.confirm(f"Delete tenant {name!r} and all its data? This cannot be undone", abort=True)
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            erased = erasure.delete_tenant(session, LocalBlobStore(settings.resolved_blob_dir), name)
    finally:
        database.dispose()
    typer.echo(json.dumps({"tenant": name, **erased.as_dict()}))
