"""Names in a model spec that only the engine can check (the API cannot import it).

The CLI and the training worker both call this before any data is read, so a typo in a
fusion or image model name fails in a second, not after the data set has loaded."""

from __future__ import annotations

from twinlens.contract.errors import InputError
from twinlens.contract.spec import ModelSpec


def check_engine_names(spec: ModelSpec) -> None:
    """Raise InputError naming the spec field ("fusion", "image_encoder") that is unknown."""
    import timm

    from twinlens.engine.fusion import FUSIONS

    if spec.fusion not in FUSIONS:
        raise InputError("fusion", f"{spec.fusion}: unknown; choose from {', '.join(sorted(FUSIONS))}")
    name = spec.image_encoder.name
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise InputError("image_encoder", f"{name}: not a timm model name")
