"""Paths named in API requests (a bundle to register, training data, a training output
folder) are confined to the folders the operator configured for them.

A request's path must be absolute, free of `..`, and, once every symlink is followed,
inside one of the roots. A refusal names the field and the setting that lists the roots,
never a resolved path: that would tell the caller where the server runs or where a symlink
leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from twinlens.contract.errors import InputError


def confined_path(field: str, raw: str, roots: Sequence[Path], *, setting: str) -> Path:
    """`raw` resolved (symlinks followed), if it lies inside one of `roots`; else InputError."""
    given = Path(raw)
    if not given.is_absolute():
        raise InputError(field, f"give an absolute path inside the folders {setting} lists")
    if ".." in given.parts:
        raise InputError(field, "'..' is not allowed in the path")
    resolved = _resolved(field, given)
    if not any(_is_inside(resolved, root) for root in roots):
        raise InputError(field, f"the path (with its symlinks followed) is outside the folders {setting} lists")
    return resolved


def _resolved(field: str, path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, too long, symlink loops
        raise InputError(field, f"not a usable path: {exc.__class__.__name__}") from None


def _is_inside(path: Path, root: Path) -> bool:
    try:
        return path.is_relative_to(root.resolve())
    except (OSError, ValueError, RuntimeError):  # a root that cannot be resolved holds nothing
        return False
