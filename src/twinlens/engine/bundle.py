"""Saving and loading model bundles (weights via safetensors only)."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model

from twinlens.contract.bundle_files import WEIGHTS_NAME, read_bundle_config, refuse_foreign_folder, seal_config, staged_bundle_folder
from twinlens.contract.errors import BundleError
from twinlens.engine.model import FusionModel, build_model
from twinlens.contract.schema import LabelSchema
from twinlens.contract.spec import ModelSpec

TOKENIZER_DIR = "tokenizer"


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("twinlens", "torch", "torchvision", "timm", "transformers", "safetensors"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def save_bundle(out_dir: Path, model: FusionModel, tokenizer: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the bundle into a temporary sibling and move it into place: never half-written."""
    with staged_bundle_folder(Path(out_dir)) as staging:
        save_model(model.cpu(), str(staging / WEIGHTS_NAME))
        tokenizer.save_pretrained(str(staging / TOKENIZER_DIR))
        _drop_unsafe_tokenizer_files(staging / TOKENIZER_DIR)
        config = seal_config(staging, {
            **extra,
            "label_schema": model.label_schema.model_dump(mode="json"),
            "model_spec": model.spec.model_dump(mode="json"),
            "text_encoder_config": model.text_encoder.config_dict(),
            "preprocessing": _preprocessing(model.spec),
            "versions": package_versions(),
            "created_at": datetime.now(timezone.utc).isoformat(),
        })
    return config


def _drop_unsafe_tokenizer_files(folder: Path) -> None:
    # Some tokenizers also write legacy files we never read; keep JSON/text only.
    for path in folder.iterdir():
        if path.suffix not in (".json", ".txt", ".model"):
            path.unlink()


def _preprocessing(spec: ModelSpec) -> dict[str, Any]:
    image = spec.image_encoder
    return {
        "image_size": image.image_size, "mean": list(image.mean), "std": list(image.std),
        "grayscale": image.grayscale, "text_inputs": spec.text_inputs, "max_length": spec.text_encoder.max_length,
    }


def load_bundle(path: str | Path) -> tuple[FusionModel, Any, dict[str, Any]]:
    """Verify, then rebuild the architecture from config and load weights (no pickle)."""
    from twinlens.engine.encoders import load_tokenizer

    root = Path(path)
    config = read_bundle_config(root)
    spec = ModelSpec.model_validate(config["model_spec"])
    schema = LabelSchema.model_validate(config["label_schema"])
    model = build_model(spec, schema, load_pretrained=False, text_config=config["text_encoder_config"])
    try:
        load_model(model, str(root / WEIGHTS_NAME), strict=True)
    except Exception as exc:
        raise BundleError(f"{root}: weights do not fit the architecture in config.json: {exc}") from exc
    model.eval()
    return model, load_tokenizer(root / TOKENIZER_DIR), config
