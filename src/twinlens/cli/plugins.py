"""Plugin commands: `twinlens plugins` (list) and `twinlens plugin new` (scaffold)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from twinlens.cli import app
from twinlens.cli.common import fail, user_errors
from twinlens.cli.render import console, print_plugins
from twinlens.contract.errors import PluginError
from twinlens.contract.registry import default_registry

plugin_app = typer.Typer(help="Create and manage plugins.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")


@app.command("plugins")
@user_errors
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print the plugins as a JSON list.")] = False,
) -> None:
    """List registered plugins with their versions and label schemas.

    A plugin that fails to load is listed with its error and the command exits 1.
    """
    entries = [_describe(name) for name in default_registry().names()]
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
    else:
        print_plugins(entries)
    broken = [entry for entry in entries if "error" in entry]
    if broken:
        fail(f"{len(broken)} plugin(s) failed to load: {', '.join(entry['name'] for entry in broken)}", code=1)


def _describe(name: str) -> dict[str, Any]:
    try:
        return default_registry().get(name).describe()
    except PluginError as exc:
        return {"name": name, "error": exc.reason}


@plugin_app.command("new")
@user_errors
def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name: lower-case letters, digits, '_' or '-'.")],
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Parent folder (default: current folder).")] = None,
) -> None:
    """Scaffold an installable plugin package with a passing conformance test."""
    from twinlens.scaffold import create_plugin

    created = create_plugin(name, directory or Path.cwd())
    console.print(f"created plugin package {created.root}")
    console.print("next steps:")
    console.print(f"  pip install -e {created.root}")
    console.print(f"  pytest {created.root / 'tests'}")
