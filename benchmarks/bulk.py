"""Bulk scoring throughput (`twinlens predict --data`) against the raw predictor, on the
generic plugin's default model (resnet18 + MiniLM) trained for one epoch.

    python benchmarks/bulk.py [--rows 5000] [--batch 32] [--threads 2]

The file has --rows rows over 200 distinct generated photos. Raw: the rows already
decoded and preprocessed, then `predict_encoded` with contributions in batches. Bulk:
`score_file` from the file on disk to the scored JSONL (reading, decoding, preprocessing on
threads, predicting, deciding, writing). Prints both rates and the ratio (target >= 0.90).
Figures only: no thresholds are asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from twinlens.contract.plugin import RawInput
from twinlens.contract.registry import get_plugin
from twinlens.engine.bulk import BulkOptions, score_file
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model


def bulk_file(root: Path, rows: int) -> Path:
    plugin = get_plugin("generic")
    manifest = plugin.make_sample_dataset(root / "data", n=200, seed=0)
    base = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    out = Path(manifest).with_name("bulk.jsonl")
    out.write_text("".join(json.dumps({**base[i % len(base)], "id": f"row-{i}"}) + "\n" for i in range(rows)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plugin = get_plugin("generic")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = bulk_file(root, args.rows)
        train = plugin.read_dataset(data.with_name("manifest.jsonl"))
        config = plugin.training_defaults().model_copy(update={"epochs": 1, "progress": False})
        bundle = train_model(plugin, train, out_dir=root / "bundle", spec=plugin.default_model_spec(), config=config).bundle_dir
        predictor = Predictor.from_bundle(bundle)

        rows = [json.loads(line) for line in data.read_text().splitlines()]
        encoded = [predictor.preprocess(plugin.prepare(RawInput(
            image_bytes=(data.parent / r["image"]).read_bytes() if r.get("image") else None, texts={"text": r.get("text")})))
            for r in rows]
        predictor.predict_encoded(encoded[: args.batch])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(encoded), args.batch):
            predictor.predict_encoded(encoded[start : start + args.batch], batch_size=args.batch)
        raw = len(encoded) / (time.perf_counter() - started)
        del encoded

        started = time.perf_counter()
        summary = score_file(plugin, predictor, data, root / "scored.jsonl", BulkOptions(batch_size=args.batch, threads=args.threads))
        bulk = summary.scored / (time.perf_counter() - started)
    print(f"rows: {args.rows}, batch {args.batch}, torch threads {args.threads}, bad rows {len(summary.bad)}")
    print(f"raw predictor (preprocessed, with contributions): {raw:7.1f} rows/s")
    print(f"bulk scoring file -> scored JSONL:               {bulk:7.1f} rows/s")
    print(f"ratio bulk / raw: {bulk / raw:.2f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
