"""A scaffolded plugin builds on the contract alone, never on another plugin's internals."""

from __future__ import annotations

import ast

from twinlens.scaffold import render


def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_generated_plugin_imports_only_the_contract_from_twinlens():
    files = render("damage_report")
    imported = _imported_modules(files["src/twinlens_damage_report/plugin.py"])
    from_twinlens = {name for name in imported if name.split(".")[0] == "twinlens"}
    assert "twinlens.contract.manifest" in from_twinlens  # it reads its table with the shared reader
    assert all(name.startswith("twinlens.contract.") for name in from_twinlens), from_twinlens
