"""Several images per case: a generated data set whose label (red or blue) shows only in
the second of two images. The multi-image model (two image slots) against the
first-image-only model (one slot, which reads the first image as single-image models
always did), for concat and cross-attention fusion, on the same data in one run.

    python benchmarks/multi_image.py [--train 240] [--test 120] [--epochs 8]

Prints held-out accuracy of each and their difference. Figures only: nothing is asserted.
Chance is 0.5; see docs/multi-image.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from twinlens.contract.plugin import DatasetOptions
from twinlens.contract.spec import ImageEncoderSpec, ModelSpec, TextEncoderSpec, TrainConfig
from twinlens.engine.evaluation import evaluate_bundle
from twinlens.engine.training import train_model
from twinlens.generic.plugin import GenericPlugin
from twinlens.generic.sample_data import make_second_image_dataset

TINY_TEXT = TextEncoderSpec(pretrained=False, max_length=24, config_overrides={
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64})


def spec(fusion: str, slots: int) -> ModelSpec:
    return ModelSpec(image_encoder=ImageEncoderSpec(name="test_resnet", image_size=32), text_encoder=TINY_TEXT,
                     fusion=fusion, hidden_dim=32, dropout=0.0, max_images=slots)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--test", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    plugin, options = GenericPlugin(), DatasetOptions(label_cols=["colour"])
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=5e-3, patience=args.epochs, progress=False, seed=0,
                         modality_dropout=0.0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        train = plugin.read_dataset(make_second_image_dataset(root / "train", args.train, seed=1), options)
        test = plugin.read_dataset(make_second_image_dataset(root / "test", args.test, seed=2), options,
                                   label_schema=train.label_schema)
        print(f"{len(train.samples)} training cases, {len(test.samples)} held out, 2 images each; "
              f"the label shows in the second image only (chance 0.5)")
        for fusion in ("concat", "cross_attention"):
            accuracy = {}
            for slots in (2, 1):
                started = time.perf_counter()
                bundle = train_model(plugin, train, out_dir=root / f"{fusion}-{slots}", spec=spec(fusion, slots),
                                     config=config).bundle_dir
                accuracy[slots] = evaluate_bundle(bundle, test)["heads"]["colour"]["accuracy"]
                print(f"  {fusion:15s} {'both images' if slots == 2 else 'first image only':17s} accuracy "
                      f"{accuracy[slots]:.3f}  ({time.perf_counter() - started:.0f} s)", flush=True)
            print(f"  {fusion:15s} multi-image minus first-image-only: {accuracy[2] - accuracy[1]:+.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
