"""Similar-case search on held-out generated support tickets, where the true fault is known.

    python benchmarks/similar.py [--train-rows 400] [--test-rows 240] [--epochs 4] [--tiny]

1. A support_ticket network is trained on generated tickets (the plugin's default spec:
   test_resnet photos at 128 px, the pretrained all-MiniLM-L6-v2 frozen; `--tiny`: the
   test suite's tiny random encoders) and an aligned image-text space (engine/align.py,
   symmetric InfoNCE) on the same training tickets' (photo, ticket text) pairs.
2. Held-out tickets (another seed) go through the predictor; their vectors are the ones a
   worker stores with each job. OCR of the photos is left out (the `ocr` input is empty):
   it is most of the time a ticket takes to read, and neither figure uses it.
3. Text-to-image: for every fault, a short description ("a swollen battery lifting the
   screen") and the fault's label description are embedded as text and compared with the
   held-out photos in the aligned space. recall@10 here: the share of the 10 best photos
   that show that fault (every fault has at least 10 held-out photos, so 1.0 is reachable);
   random: the fault's share of the held-out photos.
4. Case-to-case: each held-out case's 10 nearest other cases by fused vector;
   precision@10: the share with the same fault; random: the fault's share of the others.

Figures only, measured in this run; no thresholds asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from twinlens.cli.service import tiny_encoders
from twinlens.contract.registry import get_plugin
from twinlens.contract.sample import Sample
from twinlens.engine.align import AlignOptions, align_model, project
from twinlens.engine.predictor import Predictor
from twinlens.engine.training import train_model
from twinlens_support_ticket.dataset import read_export

QUERIES = {
    "cracked_screen": "a cracked screen with shattered glass",
    "water_damage": "the phone was dropped in water and is wet inside",
    "swollen_battery": "a swollen battery lifting the screen",
    "broken_port": "the charging port is broken and bent",
    "cosmetic_damage": "only scratches and scuffs on the case",
    "missing_part": "a part is missing from the device",
    "software_error": "an error message on the screen",
    "no_visible_fault": "the device looks normal with no damage",
}
K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--test-rows", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--align-epochs", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny random encoders (fast, weaker)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plugin = get_plugin("support_ticket")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        # OCR of the photos is left out (the `ocr` input stays empty): it is most of the time
        # a ticket takes to read, and neither figure uses it.
        train = read_export(plugin.make_sample_dataset(root / "train", n=args.train_rows, seed=0), progress=False, ocr_photos=False)
        test = read_export(plugin.make_sample_dataset(root / "test", n=args.test_rows, seed=1), progress=False, ocr_photos=False)
        spec = plugin.default_model_spec()
        if args.tiny:
            spec = spec.model_copy(update=tiny_encoders())
        config = plugin.training_defaults().model_copy(update={"epochs": args.epochs, "progress": False})
        train_model(plugin, train, out_dir=root / "model", spec=spec, config=config)
        predictor = Predictor.from_bundle(root / "model", device="cpu")
        space = align_model(root / "model", train.samples, root / "space", AlignOptions(epochs=args.align_epochs),
                            groups=[s.labels.get("fault") for s in train.samples], predictor=predictor)
        trained = time.perf_counter() - started
        vectors = [p.embeddings for p in predictor.predict(test.samples, contributions=False)]
        faults = [s.labels.get("fault") for s in test.samples]
        print(f"support_ticket: {len(train.samples)} training tickets, {len(test.samples)} held-out; "
              f"{'tiny' if args.tiny else 'default'} encoders, {args.epochs} epochs; trained in {trained:.0f} s")
        print(f"aligned space: {space.config['dim']} dims on {space.metrics['pairs']} (photo, {space.text_kind}) pairs; "
              f"held-out training pairs, share of the top 10 photos of the text's fault: "
              f"{space.metrics.get('heldout', {}).get('group_precision@10', float('nan')):.3f} "
              f"(random {space.metrics.get('heldout', {}).get('random_group_precision', float('nan')):.3f})")
        text_to_image(predictor, space, vectors, faults, space.text_kind, plugin)
        case_to_case(vectors, faults)


def text_to_image(predictor, space, vectors, faults, text_kind: str, plugin) -> None:
    rows = [i for i, v in enumerate(vectors) if "image" in v and faults[i] is not None]
    images = project(space.arrays, "image", np.stack([vectors[i]["image"] for i in rows]))
    shown = [faults[i] for i in rows]
    counts = Counter(shown)
    descriptions = {label.name: label.description for task in plugin.label_schema().tasks if task.name == "fault"
                    for label in task.labels}
    print(f"\ntext-to-image recall@{K} ({len(rows)} held-out photos; share of the top {K} showing the fault, vs random)")
    print(f"  {'fault':<18} {'short query':>12} {'description':>12} {'random':>8}   query")
    totals = {"short": [], "description": [], "random": []}
    for fault, query in QUERIES.items():
        if counts[fault] < K:
            continue
        scores = {}
        for name, text in (("short", query), ("description", descriptions[fault])):
            embedded = predictor.predict([Sample(texts={text_kind: text})], contributions=False)[0].embeddings[text_kind]
            ranking = np.argsort(-(images @ project(space.arrays, "text", embedded)[0]))[:K]
            scores[name] = float(np.mean([shown[j] == fault for j in ranking]))
            totals[name].append(scores[name])
        chance = counts[fault] / len(rows)
        totals["random"].append(chance)
        print(f"  {fault:<18} {scores['short']:>12.2f} {scores['description']:>12.2f} {chance:>8.2f}   \"{query}\"")
    mean = {name: float(np.mean(values)) for name, values in totals.items()}
    print(f"  {'mean':<18} {mean['short']:>12.2f} {mean['description']:>12.2f} {mean['random']:>8.2f}   "
          f"(short queries {mean['short'] / mean['random']:.1f}x random)")


def case_to_case(vectors, faults) -> None:
    rows = [i for i, f in enumerate(faults) if f is not None]
    fused = np.stack([vectors[i]["fused"] for i in rows]).astype(np.float32)
    fused /= np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)
    labels = [faults[i] for i in rows]
    scores = fused @ fused.T
    np.fill_diagonal(scores, -np.inf)
    precision, chance = [], []
    counts = Counter(labels)
    for row, label in enumerate(labels):
        nearest = np.argsort(-scores[row])[:K]
        precision.append(np.mean([labels[j] == label for j in nearest]))
        chance.append((counts[label] - 1) / (len(labels) - 1))
    print(f"\ncase-to-case precision@{K} (same fault, fused vectors, {len(labels)} held-out cases): "
          f"{np.mean(precision):.3f} vs random {np.mean(chance):.3f} ({np.mean(precision) / np.mean(chance):.1f}x)")


if __name__ == "__main__":
    main()
