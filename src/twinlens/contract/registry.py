"""Plugin registry over the entry-point group ``twinlens.plugins``.

Entry points are listed eagerly (cheap) but each plugin is imported and validated only
when first asked for. A plugin that fails to import or validate raises PluginError naming
it: a broken plugin is never silently skipped.
"""

from __future__ import annotations

import json
import threading
from importlib.metadata import EntryPoint, entry_points

from twinlens.contract.errors import PluginError, UnknownPluginError
from twinlens.contract.plugin import API_VERSION, Plugin
from twinlens.contract.schema import LabelSchema

GROUP = "twinlens.plugins"


def validate_plugin(plugin: Plugin, expected_name: str | None = None) -> None:
    """Check a plugin's declarations; raise PluginError naming what is wrong."""
    name = getattr(plugin, "name", None) or expected_name or type(plugin).__name__
    if not isinstance(plugin, Plugin):
        raise PluginError(name, f"{type(plugin).__qualname__} does not subclass twinlens Plugin")
    if expected_name is not None and plugin.name != expected_name:
        raise PluginError(expected_name, f"class declares name {plugin.name!r}, entry point says {expected_name!r}")
    if plugin.api_version != API_VERSION:
        raise PluginError(name, f"api_version {plugin.api_version} is not supported (this TwinLens speaks {API_VERSION})")
    try:
        schema = plugin.label_schema()
        inputs = plugin.input_schema()
        json.dumps(plugin.describe())
    except Exception as exc:  # any failure here is the plugin's bug: name it
        raise PluginError(name, f"declarations do not serialise: {exc}") from exc
    if schema is not None and not isinstance(schema, LabelSchema):
        raise PluginError(name, "label_schema() must return a LabelSchema or None")
    if inputs.image is None and not inputs.texts:
        raise PluginError(name, "input schema declares neither an image nor a text input")
    _check_model_spec(plugin, name)


def _check_model_spec(plugin: Plugin, name: str) -> None:
    spec = plugin.default_model_spec()
    unknown = set(spec.modalities) - set(spec.all_modalities())
    if unknown:
        raise PluginError(name, f"model spec uses modalities {sorted(unknown)} it does not define")


def check_schema_matches(plugin: Plugin, bundle_schema: LabelSchema) -> None:
    """A bundle made for a plugin must have one head per task with the declared labels."""
    declared = plugin.label_schema()
    if declared is None:
        return
    for task in declared.tasks:
        try:
            trained = bundle_schema.task(task.name)
        except KeyError:
            raise PluginError(plugin.name, f"model has no head for task {task.name!r}") from None
        if trained.output_size != task.output_size or trained.label_names != task.label_names:
            raise PluginError(
                plugin.name,
                f"task {task.name!r}: model head has {trained.output_size} outputs "
                f"{trained.label_names}, plugin declares {task.output_size} {task.label_names}",
            )


class PluginRegistry:
    def __init__(self, group: str = GROUP):
        self._group = group
        self._entry_points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Plugin] = {}
        self._lock = threading.Lock()

    def _discover(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=self._group):
                if ep.name in found and found[ep.name].value != ep.value:
                    raise PluginError(ep.name, f"registered twice: {found[ep.name].value} and {ep.value}")
                found[ep.name] = ep
            self._entry_points = found
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(set(self._discover()) | set(self._loaded))

    def register(self, plugin: Plugin) -> Plugin:
        """Register an instance directly (tests, embedding); validated like entry points."""
        validate_plugin(plugin)
        with self._lock:
            if plugin.name in self._loaded or plugin.name in self._discover():
                raise PluginError(plugin.name, "a plugin with this name is already registered")
            self._loaded[plugin.name] = plugin
        return plugin

    def get(self, name: str) -> Plugin:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            entry = self._discover().get(name)
            if entry is None:
                raise UnknownPluginError(name, self.names())
            plugin = self._load(entry)
            self._loaded[name] = plugin
            return plugin

    def all(self) -> list[Plugin]:
        return [self.get(name) for name in self.names()]

    @staticmethod
    def _load(entry: EntryPoint) -> Plugin:
        try:
            target = entry.load()
            plugin = target() if isinstance(target, type) else target
        except Exception as exc:
            raise PluginError(entry.name, f"failed to load {entry.value}: {exc!r}") from exc
        validate_plugin(plugin, expected_name=entry.name)
        return plugin


_default: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    global _default
    if _default is None:
        _default = PluginRegistry()
    return _default


def get_plugin(name: str) -> Plugin:
    return default_registry().get(name)
