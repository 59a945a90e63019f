"""Fusion strategies; every module here registers itself (see base.py)."""

import importlib
import pkgutil

from twinlens.engine.fusion.base import FUSIONS, Fusion, ModalityTokens, build_fusion, register_fusion

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FUSIONS", "Fusion", "ModalityTokens", "build_fusion", "register_fusion"]
