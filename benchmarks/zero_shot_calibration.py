"""How honest a zero-shot answer's confidence is: ECE (and accuracy) per head on a
held-out generated set, with the fixed tempering the classifier had before and with the
per-head temperatures the service fits on the plugin's generated samples at first load.

    python benchmarks/zero_shot_calibration.py [--plugin support_ticket] [--rows 60] [--held-out 120]
        [--fit-data DIR] [--held-out-data DIR]

The fit uses what a worker uses (`ZeroShotPredictor.calibrate`, `--rows` samples, the
worker's seed); the held-out set is another seed, never seen by the fit. Generating
support tickets runs OCR on every photo (about a second each): pass folders made before
with --fit-data / --held-out-data to reuse them (their OCR is cached beside them).
Figures only: no thresholds asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from twinlens.contract.registry import get_plugin
from twinlens.engine.zero_shot import ZeroShotConfig, evaluate_zero_shot
from twinlens.engine.zero_shot_predictor import ZeroShotPredictor
from twinlens.services.zero_shot_models import described_schema
from twinlens.worker.zero_shot_loader import CALIBRATION_SEED

HELD_OUT_SEED = 2


def samples(plugin, folder: Path | None, scratch: Path, rows: int, seed: int):
    manifest = folder if folder is not None else plugin.make_sample_dataset(scratch / f"seed{seed}", n=rows, seed=seed)
    return plugin.read_dataset(manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default="support_ticket")
    parser.add_argument("--rows", type=int, default=60, help="generated samples the temperatures are fitted on")
    parser.add_argument("--held-out", type=int, default=120)
    parser.add_argument("--fit-data", type=Path)
    parser.add_argument("--held-out-data", type=Path)
    args = parser.parse_args()
    plugin = get_plugin(args.plugin)
    schema = described_schema(plugin)
    text_inputs = list(plugin.default_model_spec().text_inputs)
    predictor = ZeroShotPredictor(plugin.name, "bench", schema, text_inputs, ZeroShotConfig())
    with tempfile.TemporaryDirectory() as scratch:
        fit = samples(plugin, args.fit_data, Path(scratch), args.rows, CALIBRATION_SEED).samples[: args.rows]
        held_out = samples(plugin, args.held_out_data, Path(scratch), args.held_out, HELD_OUT_SEED)
        before = evaluate_zero_shot(predictor.classifier, held_out)
        temperatures = predictor.calibrate(fit)
        after = evaluate_zero_shot(predictor.classifier, held_out)
    print(f"zero-shot calibration, {plugin.name}: fitted on {len(fit)} generated samples, "
          f"held-out n={len(held_out.samples)}")
    print(f"{'head':<10}{'accuracy':>10}{'ECE before':>12}{'ECE after':>11}{'temperature':>13}")
    for name in before["heads"]:
        print(f"{name:<10}{after['heads'][name]['accuracy']:>10.3f}{before['heads'][name]['ece']:>12.3f}"
              f"{after['heads'][name]['ece']:>11.3f}{temperatures.get(name, 1.0):>13.3f}")
    mean_before = sum(h["ece"] for h in before["heads"].values()) / len(before["heads"])
    mean_after = sum(h["ece"] for h in after["heads"].values()) / len(after["heads"])
    print(f"{'mean':<10}{'':>10}{mean_before:>12.3f}{mean_after:>11.3f}")


if __name__ == "__main__":
    main()
