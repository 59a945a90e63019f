"""Installed domain plugins and their label and input schemas."""

from __future__ import annotations

from fastapi import APIRouter

from twinlens.api.deps import PluginDep
from twinlens.api.problems import problem_responses
from twinlens.services import plugins
from twinlens.services.views import PluginList, PluginView

router = APIRouter(prefix="/v1/plugins", tags=["plugins"])


@router.get("", response_model=PluginList, summary="List installed plugins")
def list_plugins() -> PluginList:
    return PluginList(data=plugins.installed_plugins())


@router.get("/{name}", response_model=PluginView, summary="A plugin's schemas", responses=problem_responses(404, 422))
def get_plugin(plugin: PluginDep) -> PluginView:
    return plugins.plugin_view(plugin)
