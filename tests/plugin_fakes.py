"""Fake installed distributions with entry points, for registry and CLI tests.

A folder on sys.path holding `<dist>.dist-info/entry_points.txt` is exactly what an
installed package looks like to importlib.metadata, so the registry is exercised through
the real entry-point machinery without touching the shared virtual environment.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD_PLUGIN = '''
from pathlib import Path
from twinlens.contract.plugin import Plugin
from twinlens.contract.schema import InputSchema, Label, LabelSchema, Task


class {cls}(Plugin):
    name = "{name}"
    api_version = {api_version}

    def label_schema(self):
        return LabelSchema(tasks=(Task(name="t", kind="multiclass", labels=(Label(name="a"), Label(name="b"))),))

    def input_schema(self):
        return InputSchema()

    def read_dataset(self, path, options=None):
        raise NotImplementedError

    def make_sample_dataset(self, out_dir, n=200, seed=0):
        raise NotImplementedError

    def decide(self, prediction):
        return {{"needs_review": False}}
'''


def plugin_source(name: str, cls: str = "FakePlugin", api_version: int = 1) -> str:
    return GOOD_PLUGIN.format(name=name, cls=cls, api_version=api_version)


def install_fake(root: Path, dist: str, entries: dict[str, str], modules: dict[str, str], group: str) -> Path:
    """Write modules and a dist-info declaring `entries` (name -> "module:attr") in `group`."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")
    return root
