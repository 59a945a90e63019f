"""What an explanation costs per job: the heatmap and word weights of every head against
the plain prediction the worker makes anyway, per image encoder family.

    python benchmarks/explanations.py [--threads 2] [--jobs 12] [--steps 16]

Models: the support_ticket plugin's default spec (a photo and two texts: ticket and OCR,
the lexical branch on) with small randomly initialised encoders of each family, a CNN
(resnet18 at 224 px, Grad-CAM on its 7x7 map) and a ViT (vit_tiny at 224 px, 14x14
patches), and the pretrained all-MiniLM-L6-v2 text encoder; the heads are untrained (the
cost of an explanation does not depend on what it says). Jobs are ticket-like inputs: a
224 px photo, a 20-60 word ticket and a short OCR text. "predict" is one job through
`predict_encoded` with modality contributions (what a worker runs per job at batch 1),
"explain" is `Explainer.explain` for that job: one Grad-CAM backward pass per head and
integrated gradients (`--steps` interpolation steps, one batched pass each) per head and
text field, plus the lexical branch's gradient. Medians over jobs; ratios within this
run. Figures only: no thresholds asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch
from PIL import Image

from twinlens.contract.registry import get_plugin
from twinlens.contract.sample import Sample
from twinlens.contract.spec import ImageEncoderSpec
from twinlens.engine.data import Preprocessor
from twinlens.engine.encoders import load_tokenizer
from twinlens.engine.explain import Explainer
from twinlens.engine.model import FusionModel
from twinlens.engine.predictor import Predictor

WORDS = ("screen cracked battery swollen water damage port broken error code E-4471 restart update charger hinge "
         "loose speaker crackles after the last firmware update and the device shuts down when unplugged").split()
ENCODERS = {"cnn (resnet18)": ImageEncoderSpec(name="resnet18", image_size=224, pretrained=False),
            "vit (vit_tiny_patch16_224)": ImageEncoderSpec(name="vit_tiny_patch16_224", image_size=224, pretrained=False)}


def jobs(count: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (224, 224, 3), dtype=np.uint8)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
        samples.append(Sample(image=Image.fromarray(pixels), texts={"text": text, "ocr": f"ERROR E-{rng.randint(1000, 9999)}"}))
    return samples


def predictor_for(image: ImageEncoderSpec) -> Predictor:
    plugin = get_plugin("support_ticket")
    spec = plugin.default_model_spec().model_copy(update={"image_encoder": image, "lexical_buckets": 4096})
    model = FusionModel(spec, plugin.label_schema(), load_pretrained=True)
    model.eval()
    tokenizer = load_tokenizer(spec.text_encoder.name)
    predictor = Predictor.__new__(Predictor)
    predictor.model, predictor.config, predictor.device = model, {"plugin": plugin.name, "version": "bench"}, torch.device("cpu")
    predictor.pre, predictor.temperatures, predictor.stats = Preprocessor(spec, tokenizer), {}, {}
    return predictor


def measure(predictor: Predictor, samples: list[Sample], steps: int) -> tuple[float, float, str]:
    explainer = Explainer(predictor, ig_steps=steps)
    predict_ms, explain_ms = [], []
    encoded = [predictor.preprocess(s) for s in samples]
    predictor.predict_encoded(encoded[:1])  # warm up
    method = ""
    for item in encoded:
        started = time.perf_counter()
        prediction = predictor.predict_encoded([item])[0]
        predict_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        explanation = explainer.explain(item, prediction)
        explain_ms.append((time.perf_counter() - started) * 1000)
        method = explanation.heads["fault"].heatmap.method
    return statistics.median(predict_ms), statistics.median(explain_ms), method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=16, help="integrated-gradients steps (TWINLENS_EXPLAIN_STEPS)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = jobs(args.jobs)
    print(f"explanation overhead per job: support_ticket spec (2 heads, photo + 2 texts), {args.jobs} jobs, "
          f"{args.steps} IG steps, {args.threads} threads")
    print(f"{'image encoder':<28}{'heatmap':<26}{'predict ms':>12}{'explain ms':>12}{'ratio':>8}")
    for name, image in ENCODERS.items():
        predict, explain, method = measure(predictor_for(image), samples, args.steps)
        print(f"{name:<28}{method:<26}{predict:>12.1f}{explain:>12.1f}{explain / predict:>8.1f}")


if __name__ == "__main__":
    main()
