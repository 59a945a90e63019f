"""Raw predictor throughput with modality contributions: one encoder pass per batch (what
`Predictor.predict_encoded` does) against masking each modality and re-running the whole
model (what it did before), on the generic plugin's default model.

    python benchmarks/contributions.py [--batch 16] [--rounds 5] [--threads 2]

Both are timed in alternating rounds in one run (the machine is noisy); prints samples/s
of each (median over rounds), the ratio, and the largest difference between the two
contribution figures. Figures only: no thresholds are asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from twinlens.contract.registry import get_plugin
from twinlens.engine.predictor import Predictor, contribution_masks, modality_contributions
from twinlens.engine.training import train_model


def trained_predictor(root: Path) -> tuple[Predictor, list]:
    plugin = get_plugin("generic")
    data = plugin.read_dataset(plugin.make_sample_dataset(root / "data", n=64, seed=0))
    config = plugin.training_defaults().model_copy(update={"epochs": 1, "progress": False})
    bundle = train_model(plugin, data, out_dir=root / "bundle", spec=plugin.default_model_spec(), config=config).bundle_dir
    predictor = Predictor.from_bundle(bundle)
    return predictor, [predictor.preprocess(s) for s in data.samples]


def re_running(predictor: Predictor, encoded) -> list[dict[str, float]]:
    present = predictor._present(encoded)
    full = predictor.outputs(encoded)
    masked = contribution_masks(predictor.spec.modalities, present)
    without = {m: predictor.outputs(encoded, [o for o in predictor.spec.modalities if o != m]) for m in masked}
    return modality_contributions(without, full, present, predictor.label_schema, predictor.stats)


def one_pass(predictor: Predictor, encoded) -> list[dict[str, float]]:
    return [p.contributions for p in predictor.predict_encoded(encoded)]


def timed(fn, predictor, encoded) -> tuple[float, list]:
    started = time.perf_counter()
    shares = fn(predictor, encoded)
    return len(encoded) / (time.perf_counter() - started), shares


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        predictor, encoded = trained_predictor(Path(tmp))
        batch = encoded[: args.batch]
        one_pass(predictor, batch), re_running(predictor, batch)  # warm-up
        rates: dict[str, list[float]] = {"one encoder pass": [], "re-running per mask": []}
        largest = 0.0
        for _ in range(args.rounds):
            new_rate, new = timed(one_pass, predictor, batch)
            old_rate, old = timed(re_running, predictor, batch)
            rates["one encoder pass"].append(new_rate)
            rates["re-running per mask"].append(old_rate)
            largest = max([largest] + [abs(a[m] - b[m]) for a, b in zip(new, old) for m in a])
    spec = predictor.spec
    print(f"model: {spec.image_encoder.name} {spec.image_encoder.image_size} px + text {spec.text_encoder.name or 'pretrained'}, "
          f"fusion {spec.fusion}, batch {args.batch}, {args.rounds} rounds, torch threads {args.threads}")
    for name, values in rates.items():
        print(f"{name:<24} {statistics.median(values):7.1f} samples/s (median)")
    ratio = statistics.median(rates["one encoder pass"]) / statistics.median(rates["re-running per mask"])
    print(f"ratio one pass / re-running: {ratio:.2f}x  (target >= 1.8x)")
    print(f"largest contribution difference: {largest:.2e}")


if __name__ == "__main__":
    main()
