"""Installed domain plugins and their label and input schemas."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from twinlens.api.deps import PluginDep
from twinlens.api.problems import problem_responses
from twinlens.contract.errors import PluginError
from twinlens.contract.registry import default_registry
from twinlens.services.views import PluginList, PluginView

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/plugins", tags=["plugins"])


@router.get("", response_model=PluginList, summary="List installed plugins")
def list_plugins() -> PluginList:
    registry = default_registry()
    views = []
    for name in registry.names():
        try:
            views.append(PluginView(**registry.get(name).describe()))
        except PluginError as exc:  # listed loudly with its error, never silently dropped
            log.error("broken plugin %s: %s", name, exc)
            views.append(PluginView(name=name, error=str(exc)))
    return PluginList(data=views)


@router.get("/{name}", response_model=PluginView, summary="A plugin's schemas", responses=problem_responses(404, 422))
def get_plugin(plugin: PluginDep) -> PluginView:
    return PluginView(**plugin.describe())
