"""What every command shares: user-error handling, option parsing, safe file output.

A user error (bad data, unknown plugin, bad flag value, broken bundle) prints one clear
message to stderr and exits with status 2; only bugs show a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from twinlens.contract.errors import TwinLensError
from twinlens.contract.json_values import json_safe

USER_ERROR = 2
F = TypeVar("F", bound=Callable[..., Any])


class UsageProblem(TwinLensError):
    """A flag or option value that cannot be used; the message says which and why."""


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command: F) -> F:
    """Turn TwinLens's named errors into a message and exit status 2."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TwinLensError as exc:  # DatasetError's message lists every bad row
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"{exc.filename or exc}: no such file")

    return run  # type: ignore[return-value]


def split_list(values: list[str] | None) -> list[str]:
    """Options that may be repeated or given as a comma list: -l a -l b == -l a,b."""
    items: list[str] = []
    for value in values or []:
        items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`name=value` pairs from a repeatable option."""
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip():
            raise UsageProblem(f"{option} expects name=value, got {value!r}")
        pairs[name.strip()] = rest
    return pairs


def write_json(path: Path, data: Any) -> None:
    """Write through a temporary file and rename: a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(json_safe(data), out, indent=2, allow_nan=False)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageProblem(f"{what} {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"{what} {path}: not valid JSON ({exc})") from None
