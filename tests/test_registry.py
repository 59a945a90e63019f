"""The plugin registry over real entry points: loading, validation, loud failures."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from plugin_fakes import install_fake, plugin_source

from twinlens.contract.errors import PluginError, UnknownPluginError
from twinlens.contract.registry import PluginRegistry
from twinlens.generic import GenericPlugin


@pytest.fixture
def group() -> str:
    # A fresh group per test: nothing else installed answers to it.
    return f"twinlens.test_plugins_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def module_name() -> str:
    return f"fake_plugin_{uuid.uuid4().hex[:8]}"


def registry_with(tmp_path: Path, monkeypatch, group: str, entries: dict[str, str], modules: dict[str, str], dist: str = "fakedist") -> PluginRegistry:
    root = install_fake(tmp_path / dist, dist, entries, modules, group)
    monkeypatch.syspath_prepend(str(root))
    return PluginRegistry(group=group)


def test_a_good_plugin_loads_lazily(tmp_path, monkeypatch, group, module_name):
    registry = registry_with(tmp_path, monkeypatch, group, {"demo": f"{module_name}:FakePlugin"}, {module_name: plugin_source("demo")})
    assert registry.names() == ["demo"]
    assert module_name not in sys.modules  # listing names imports nothing
    plugin = registry.get("demo")
    assert plugin.name == "demo"
    assert registry.get("demo") is plugin
    assert module_name in sys.modules


def test_a_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch, group, module_name):
    source = "import a_module_that_does_not_exist\n"
    registry = registry_with(tmp_path, monkeypatch, group, {"broken": f"{module_name}:FakePlugin"}, {module_name: source})
    with pytest.raises(PluginError) as caught:
        registry.get("broken")
    assert caught.value.plugin == "broken"
    assert "failed to load" in str(caught.value) and "a_module_that_does_not_exist" in str(caught.value)


def test_a_plugin_whose_constructor_raises_is_named(tmp_path, monkeypatch, group, module_name):
    source = plugin_source("boom") + "\n    def __init__(self):\n        raise RuntimeError('no config')\n"
    registry = registry_with(tmp_path, monkeypatch, group, {"boom": f"{module_name}:FakePlugin"}, {module_name: source})
    with pytest.raises(PluginError, match="'boom'.*no config"):
        registry.get("boom")


def test_wrong_api_version_is_refused(tmp_path, monkeypatch, group, module_name):
    registry = registry_with(tmp_path, monkeypatch, group, {"old": f"{module_name}:FakePlugin"}, {module_name: plugin_source("old", api_version=99)})
    with pytest.raises(PluginError, match="api_version 99 is not supported"):
        registry.get("old")


def test_entry_point_name_must_match_the_class(tmp_path, monkeypatch, group, module_name):
    registry = registry_with(tmp_path, monkeypatch, group, {"alias": f"{module_name}:FakePlugin"}, {module_name: plugin_source("real")})
    with pytest.raises(PluginError, match="declares name 'real'"):
        registry.get("alias")


def test_not_a_plugin_subclass_is_refused(tmp_path, monkeypatch, group, module_name):
    registry = registry_with(tmp_path, monkeypatch, group, {"odd": f"{module_name}:Thing"}, {module_name: "class Thing:\n    name = 'odd'\n"})
    with pytest.raises(PluginError, match="does not subclass"):
        registry.get("odd")


def test_declarations_that_fail_are_named(tmp_path, monkeypatch, group, module_name):
    source = plugin_source("bad") + "\n    def input_schema(self):\n        raise KeyError('texts')\n"
    registry = registry_with(tmp_path, monkeypatch, group, {"bad": f"{module_name}:FakePlugin"}, {module_name: source})
    with pytest.raises(PluginError, match="'bad': declarations do not serialise"):
        registry.get("bad")


def test_two_distributions_claiming_one_name_is_an_error(tmp_path, monkeypatch, group, module_name):
    other = module_name + "_b"
    registry_with(tmp_path, monkeypatch, group, {"twin": f"{module_name}:FakePlugin"}, {module_name: plugin_source("twin")}, dist="dist_a")
    registry = registry_with(tmp_path, monkeypatch, group, {"twin": f"{other}:FakePlugin"}, {other: plugin_source("twin")}, dist="dist_b")
    with pytest.raises(PluginError, match="'twin': registered twice"):
        registry.names()


def test_registering_a_taken_name_is_an_error(tmp_path, monkeypatch, group, module_name):
    registry = registry_with(tmp_path, monkeypatch, group, {"generic": f"{module_name}:FakePlugin"}, {module_name: plugin_source("generic")})
    with pytest.raises(PluginError, match="already registered"):
        registry.register(GenericPlugin())
    empty = PluginRegistry(group=group + "_empty")
    empty.register(GenericPlugin())
    with pytest.raises(PluginError, match="already registered"):
        empty.register(GenericPlugin())


def test_unknown_names_list_the_known_ones(tmp_path, monkeypatch, group, module_name):
    registry = registry_with(tmp_path, monkeypatch, group, {"demo": f"{module_name}:FakePlugin"}, {module_name: plugin_source("demo")})
    with pytest.raises(UnknownPluginError, match="unknown plugin 'nope'; registered: demo"):
        registry.get("nope")
