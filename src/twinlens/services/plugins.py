"""The installed domain plugins, as the API lists them."""

from __future__ import annotations

import logging

from twinlens.contract.errors import PluginError
from twinlens.contract.plugin import Plugin
from twinlens.contract.registry import default_registry
from twinlens.services.views import PluginView

log = logging.getLogger(__name__)


def installed_plugins() -> list[PluginView]:
    """Every registered plugin; a broken one is listed with its error, never silently dropped."""
    registry = default_registry()
    views = []
    for name in registry.names():
        try:
            views.append(plugin_view(registry.get(name)))
        except PluginError as exc:
            log.error("broken plugin %s: %s", name, exc)
            views.append(PluginView(name=name, error=str(exc)))
    return views


def plugin_view(plugin: Plugin) -> PluginView:
    return PluginView(**plugin.describe())
