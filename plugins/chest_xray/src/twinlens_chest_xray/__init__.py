"""TwinLens chest X-ray + report plugin (research use only; not a diagnostic device)."""

from twinlens_chest_xray.plugin import ChestXrayPlugin

__all__ = ["ChestXrayPlugin"]
