"""Build a plugin's zero-shot predictor for a zero-shot model version (services/zero_shot_models.py).

Calibration: each head's temperature is fitted on `zero_shot_calibration_rows` samples the
plugin generates (labelled by construction), once per plugin version, label schema and
text model; the fitted temperatures are kept in data_dir/zero-shot/ so other worker
processes and restarts reuse them. If the plugin cannot generate samples the answers keep
the fixed tempering, and say so in their extras.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from twinlens.contract.errors import BundleError
from twinlens.contract.registry import get_plugin
from twinlens.services.zero_shot_models import described_schema, plugin_of_path

log = logging.getLogger(__name__)
CALIBRATION_SEED = 7919  # generated samples for calibration; benchmarks hold out other seeds


def load_zero_shot(bundle_path: str, expected_version: str, settings: Any, *, device: str | None = None) -> Any:
    from twinlens.engine.zero_shot import ZeroShotConfig
    from twinlens.engine.zero_shot_predictor import ZeroShotPredictor

    if settings is None:
        from twinlens.settings import get_settings

        settings = get_settings()
    plugin = get_plugin(plugin_of_path(bundle_path))
    schema = described_schema(plugin)
    if schema is None:
        raise BundleError(f"plugin {plugin.name!r} has no label descriptions to answer zero-shot")
    config = ZeroShotConfig(clip_model=settings.zero_shot_clip_model)
    _, _, version = expected_version.partition("@")
    predictor = ZeroShotPredictor(plugin.name, version, schema, list(plugin.default_model_spec().text_inputs), config, device)
    rows = settings.zero_shot_calibration_rows
    if rows:
        temperatures = _calibration(plugin, predictor, config, rows, Path(settings.data_dir) / "zero-shot")
        if temperatures:
            predictor.use_temperatures(temperatures)
    return predictor


def _calibration(plugin: Any, predictor: Any, config: Any, rows: int, folder: Path) -> dict[str, float] | None:
    from twinlens.engine.zero_shot_predictor import calibration_key, read_cached, write_cached

    path = folder / f"{plugin.name}-{calibration_key(plugin.name, plugin.version, predictor.label_schema, config, rows)}.json"
    cached = read_cached(path)
    if cached is not None:
        return cached
    try:
        with tempfile.TemporaryDirectory(prefix="twinlens-zero-shot-") as scratch:
            manifest = plugin.make_sample_dataset(Path(scratch) / "samples", n=rows, seed=CALIBRATION_SEED)
            samples = plugin.read_dataset(manifest).samples
            temperatures = predictor.calibrate(samples)
    except Exception:
        log.exception("calibrating %s's zero-shot answers failed; they keep the fixed tempering", plugin.name)
        return None
    write_cached(path, temperatures, rows)
    log.info("zero-shot %s calibrated on %d generated samples: %s", plugin.name, len(samples), temperatures)
    return temperatures
