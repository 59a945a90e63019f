"""Image decoding cost next to the model: full decode vs reduced-size JPEG decode (draft).

    python benchmarks/decode.py [--size 224] [--repeat 5]

Decoding a phone photo can cost more than a small CNN's forward pass on a 2-core machine,
so the worker decodes JPEGs at the smallest libjpeg scale that keeps enough pixels.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from twinlens.contract.images import decode_image

SHAPES = {"1600x1200": (1600, 1200), "12MP phone (4000x3000)": (4000, 3000)}


def photo_like_jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BICUBIC)  # smooth, photo-like
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def per_image_ms(data: bytes, target: int | None, size: int, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        image = decode_image(data, target_size=target)
        image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return (time.perf_counter() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224, help="model input side")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"decode + resize to {args.size}x{args.size}, ms per image (lower is better)")
    for name, (width, height) in SHAPES.items():
        data = photo_like_jpeg(width, height)
        full = per_image_ms(data, None, args.size, args.repeat)
        for target in (args.size, 1024):
            reduced = per_image_ms(data, target, args.size, args.repeat)
            print(f"{name:<24} full {full:7.1f}  draft(short side>={target:>4}) {reduced:7.1f}  speed-up {full / reduced:5.1f}x")


if __name__ == "__main__":
    main()
