"""`twinlens plugin new NAME`: write an installable plugin package from templates.

The package has a pyproject declaring the ``twinlens.plugins`` entry point, a Plugin
subclass with a small label schema, read_dataset / make_sample_dataset / decide, a README
and a test running the conformance kit (which passes once the package is installed).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

import twinlens
from twinlens.contract.errors import TwinLensError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$")
# output path (with {module} placeholder) -> template file
LAYOUT = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "src/{module}/__init__.py": "__init__.py.tmpl",
    "src/{module}/plugin.py": "plugin.py.tmpl",
    "tests/test_conformance.py": "test_conformance.py.tmpl",
}


class ScaffoldError(TwinLensError):
    """The plugin cannot be created (bad name, folder already there)."""


@dataclass(frozen=True)
class CreatedPlugin:
    name: str
    root: Path
    module: str
    class_name: str
    files: tuple[Path, ...]


def names_for(name: str) -> dict[str, str]:
    """Every spelling of the plugin name the templates need."""
    if not NAME_PATTERN.match(name) or len(name) > 40:
        raise ScaffoldError(
            f"plugin name {name!r}: use lower-case letters and digits, words joined by '_' or '-', "
            "starting with a letter (at most 40 characters)"
        )
    words = re.split(r"[_-]", name)
    return {
        "name": name,
        "module": "twinlens_" + "_".join(words),
        "dist_name": "twinlens-" + "-".join(words),
        "class_name": "".join(word.capitalize() for word in words) + "Plugin",
        "title": " ".join(words).capitalize(),
        "twinlens_version": twinlens.__version__,
    }


def render(name: str) -> dict[str, str]:
    """Relative path -> file content for a plugin called `name`."""
    values = names_for(name)
    templates = files("twinlens.scaffold") / "templates"
    return {
        path.format(module=values["module"]): Template((templates / template).read_text(encoding="utf-8")).substitute(values)
        for path, template in LAYOUT.items()
    }


def create_plugin(name: str, parent: Path) -> CreatedPlugin:
    """Write the package into parent/<dist name>; refuses to touch an existing folder.

    Files are written into a temporary sibling folder that is renamed into place, so a
    failure never leaves a half-written package behind.
    """
    values = names_for(name)
    parent = Path(parent).resolve()
    root = parent / values["dist_name"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another --dir or remove it")
    _refuse_registered(name)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=parent))
    try:
        for relative, content in render(name).items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a package folder is not
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = tuple(root / relative for relative in render(name))
    return CreatedPlugin(name, root, values["module"], values["class_name"], written)


def _refuse_registered(name: str) -> None:
    from twinlens.contract.registry import default_registry

    if name in default_registry().names():
        raise ScaffoldError(f"a plugin named {name!r} is already registered; installing a second would clash")
