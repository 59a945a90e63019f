"""Serving throughput of one model on three runtimes: the torch fp32 predictor, the ONNX
fp32 graph and the ONNX int8 graph (onnxruntime), at batch 16, plus the int8 metric drop.

    python benchmarks/export.py [--threads 2] [--rounds 5] [--batches 3] [--train-rows 400]

The model is the generic plugin's default network (resnet18 at 224 px, the pretrained
all-MiniLM-L6-v2 text encoder, concat fusion) with the lexical branch the automatic recipe
adds. Its encoders stay as built (resnet18 untrained, MiniLM pretrained) and frozen; the
projections, fusion and heads are trained for a few epochs on the generic plugin's
generated data so that the metric drop means something. Throughput is measured on
ticket-like inputs (224 px photos, texts of 20 to 60 words) through `predict_encoded`,
what a worker calls, with modality contributions (the default) and without; the three
runtimes are timed in alternating rounds (the machine is noisy) and each figure is the
median over rounds. Ratios are within this run. Figures only: no thresholds asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twinlens.contract.registry import get_plugin
from twinlens.contract.sample import Sample
from twinlens.engine.metrics import full_report
from twinlens.engine.onnx_export import export_bundle
from twinlens.engine.onnx_runtime import OnnxPredictor
from twinlens.engine.predictor import Predictor
from twinlens.engine.recipe import LEXICAL_BUCKETS
from twinlens.engine.training import train_model

WORDS = ("screen cracked battery swollen water damage port broken error code E-4471 restart update charger hinge "
         "loose speaker crackles after the last firmware update and the device shuts down when unplugged").split()


def trained_bundle(root: Path, rows: int, epochs: int):
    plugin = get_plugin("generic")
    data = plugin.read_dataset(plugin.make_sample_dataset(root / "train", n=rows, seed=0))
    base = plugin.default_model_spec()
    spec = base.model_copy(update={
        "lexical_buckets": LEXICAL_BUCKETS,
        "image_encoder": base.image_encoder.model_copy(update={"freeze": True}),
        "text_encoder": base.text_encoder.model_copy(update={"freeze": True}),
    })
    config = plugin.training_defaults().model_copy(update={"epochs": epochs, "progress": False, "lr": 3e-3, "patience": epochs})
    result = train_model(plugin, data, out_dir=root / "torch", spec=spec, config=config)
    held_out = plugin.read_dataset(plugin.make_sample_dataset(root / "held_out", n=200, seed=1), label_schema=data.label_schema)
    return result.bundle_dir, held_out


def ticket_like(count: int, side: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed).integers(0, 256, (count, side, side, 3), dtype=np.uint8)
    return [Sample(image=Image.fromarray(pixels[i]), texts={"text": " ".join(rng.choices(WORDS, k=rng.randint(20, 60)))})
            for i in range(count)]


def score(predictor, dataset) -> dict[str, float]:
    from twinlens.engine.data import encode_targets

    schema = dataset.label_schema
    encoded = [predictor.preprocess(s) for s in dataset.samples]
    outputs = {k: np.asarray(v) for k, v in predictor.outputs(encoded).items()}
    raw = {t.name: (0.0, 1.0) for t in schema.tasks if t.kind == "regression"}
    targets = encode_targets(dataset.samples, schema, raw)
    report = full_report(schema, outputs, {k: v.numpy() for k, v in targets.values.items()}, {k: m.numpy() for k, m in targets.masks.items()})
    figures = {}
    for name, head in report["heads"].items():
        key = "r2" if head.get("macro_f1") is None else "macro_f1"
        figures[f"{name}.{key}"] = float(head[key])
    figures["mean.score"] = float(report["mean"]["score"])
    return figures


def rate(predictor, encoded, batch: int, contributions: bool) -> float:
    started = time.perf_counter()
    for start in range(0, len(encoded), batch):
        predictor.predict_encoded(encoded[start:start + batch], contributions=contributions, batch_size=batch)
    return len(encoded) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads = onnxruntime intra-op threads")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        bundle, held_out = trained_bundle(root, args.train_rows, args.epochs)
        trained = time.perf_counter() - started
        result = export_bundle(bundle, root / "onnx", quantize="int8")
        exported = time.perf_counter() - started - trained
        predictors = {
            "torch fp32": Predictor.from_bundle(root / "onnx", device="cpu"),
            "onnx fp32": OnnxPredictor.from_bundle(root / "onnx", precision="fp32", threads=args.threads),
            "onnx int8": OnnxPredictor.from_bundle(root / "onnx", precision="int8", threads=args.threads),
        }
        spec = predictors["torch fp32"].spec
        sizes = {p: (root / "onnx" / name).stat().st_size / 2**20 for p, name in result.onnx["graphs"].items()}
        print(f"model: generic default spec: {spec.image_encoder.name} at {spec.image_encoder.image_size} px, "
              f"{spec.text_encoder.name} (max_length {spec.text_encoder.max_length}), {spec.fusion} fusion, hidden {spec.hidden_dim}, "
              f"lexical buckets {spec.lexical_buckets}; heads: {', '.join(t.name + ' (' + t.kind + ')' for t in predictors['torch fp32'].label_schema.tasks)}")
        print(f"trained the projections, fusion and heads on {args.train_rows} generated rows in {trained:.0f} s (encoders frozen); "
              f"export + int8 quantization {exported:.0f} s ({result.onnx['exporter']} exporter); "
              f"graphs: fp32 {sizes['fp32']:.1f} MiB, int8 {sizes['int8']:.1f} MiB")
        print(f"export check, max |logit difference| vs torch on generated rows: fp32 {result.onnx['parity']['fp32_max_abs_diff']:.2e}, "
              f"int8 {result.onnx['parity']['int8_max_abs_diff']:.2e}")

        scores = {name: score(p, held_out) for name, p in predictors.items()}
        print(f"\nmetric on {len(held_out.samples)} held-out generated rows (generic sample data, seed 1):")
        keys = list(scores["torch fp32"])
        print(f"  {'runtime':<12}" + "".join(f"{k:>20}" for k in keys))
        for name, figures in scores.items():
            print(f"  {name:<12}" + "".join(f"{figures[k]:>20.4f}" for k in keys))
        drop = {k: scores["onnx fp32"][k] - scores["onnx int8"][k] for k in keys}
        print("  int8 drop vs onnx fp32: " + ", ".join(f"{k} {v:+.4f}" for k, v in drop.items()))
        print("  onnx fp32 vs torch fp32: " + ", ".join(f"{k} {scores['torch fp32'][k] - scores['onnx fp32'][k]:+.4f}" for k in keys))

        samples = ticket_like(args.batch * args.batches, spec.image_encoder.image_size)
        encoded = {name: [p.preprocess(s) for s in samples] for name, p in predictors.items()}
        tokens = [len(e.tokens["text"]) for e in encoded["torch fp32"]]
        print(f"\nthroughput at batch {args.batch}, {args.threads} threads, {args.batches} batches per round, median of {args.rounds} rounds; "
              f"inputs: {spec.image_encoder.image_size} px photos + texts of {min(tokens)}-{max(tokens)} tokens")
        for contributions in (True, False):
            for name, p in predictors.items():  # warm-up
                rate(p, encoded[name][: args.batch], args.batch, contributions)
            rates: dict[str, list[float]] = {name: [] for name in predictors}
            for _ in range(args.rounds):
                for name, p in predictors.items():
                    rates[name].append(rate(p, encoded[name], args.batch, contributions))
            medians = {name: statistics.median(values) for name, values in rates.items()}
            label = "predict_encoded with contributions (the worker's call)" if contributions else "predict_encoded without contributions"
            print(f"  {label}:")
            for name, value in medians.items():
                spread = f"{min(rates[name]):.1f}-{max(rates[name]):.1f}"
                print(f"    {name:<11} {value:7.2f} samples/s  (rounds {spread})  x{value / medians['torch fp32']:.2f} torch fp32")
            print(f"    int8 / onnx fp32: x{medians['onnx int8'] / medians['onnx fp32']:.2f}")


if __name__ == "__main__":
    main()
