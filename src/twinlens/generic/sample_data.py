"""A small generated data set for demos and tests: coloured shapes + short sentences.

Columns of ``manifest.jsonl``:

* ``label`` (multiclass) ``<shape>_<size>``: the shape (circle/square) is only visible in
  the image and the size (small/large) is only said in the text, so a model needs both
  modalities; some sentences leave the size out, so it is not always decidable.
* ``tags`` (multilabel): the colour plus ``dotted``/``outlined`` when drawn (mostly visual;
  the sentence sometimes names the colour too).
* ``area`` (regression): the share of the picture the shape covers.

A few rows have no image or no text, as real data does. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

IMAGE_SIDE = 64
SHAPES = ("circle", "square")
SIZES = ("small", "large")
COLOURS = {"red": (205, 40, 40), "green": (40, 170, 60), "blue": (45, 70, 210)}
SENTENCES_WITH_SIZE = (
    "A {size} {colour} item on a plain background.",
    "The customer says the piece is {size}.",
    "Reported as a {size} part, colour {colour}.",
    "This one is {size}; please check it.",
)
SENTENCES_WITHOUT_SIZE = (
    "An item on a plain background.",
    "Photo attached, colour {colour}.",
)
MISSING_SHARE = 0.05  # of rows without an image, and again of rows without text


def make_sample_dataset(out_dir: Path, n: int = 200, seed: int = 0) -> Path:
    """Write `n` rows (PNG images + manifest.jsonl) under out_dir; return the manifest."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = [_make_row(out_dir, index, rng) for index in range(n)]
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="ascii")
    return manifest


def _make_row(out_dir: Path, index: int, rng: random.Random) -> dict[str, Any]:
    shape, size, colour = rng.choice(SHAPES), rng.choice(SIZES), rng.choice(list(COLOURS))
    dotted, outlined = rng.random() < 0.3, rng.random() < 0.3
    image, area = _draw(shape, COLOURS[colour], dotted, outlined, rng)
    tags = [colour] + (["dotted"] if dotted else []) + (["outlined"] if outlined else [])
    row: dict[str, Any] = {
        "id": f"sample-{index:04d}",
        "image": None,
        "text": _sentence(size, colour, rng),
        "label": f"{shape}_{size}",
        "tags": tags,
        "area": round(area, 4),
    }
    missing = rng.random()
    if missing >= MISSING_SHARE:  # image kept
        relative = f"images/sample-{index:04d}.png"
        image.save(out_dir / relative, format="PNG")
        row["image"] = relative
    if MISSING_SHARE <= missing < 2 * MISSING_SHARE:
        row["text"] = ""
    return row


def _sentence(size: str, colour: str, rng: random.Random) -> str:
    templates = SENTENCES_WITH_SIZE if rng.random() < 0.85 else SENTENCES_WITHOUT_SIZE
    return rng.choice(templates).format(size=size, colour=colour)


def _draw(shape: str, rgb: tuple[int, int, int], dotted: bool, outlined: bool, rng: random.Random):
    import numpy as np
    from PIL import Image, ImageDraw

    noise = np.random.default_rng(rng.getrandbits(32))
    grey = rng.randint(90, 200)
    background = noise.normal(grey, 18, size=(IMAGE_SIDE, IMAGE_SIDE, 3)).clip(0, 255).astype("uint8")
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    half = rng.randint(10, 24)  # drawn size is random: the text, not the picture, says small/large
    cx, cy = rng.randint(half, IMAGE_SIDE - half), rng.randint(half, IMAGE_SIDE - half)
    box = (cx - half, cy - half, cx + half, cy + half)
    fill = tuple(max(0, min(255, channel + rng.randint(-25, 25))) for channel in rgb)
    outline = (20, 20, 20) if outlined else None
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=3)
        area = 3.14159 * half * half
    else:
        draw.rectangle(box, fill=fill, outline=outline, width=3)
        area = (2 * half) ** 2
    if dotted:
        for _ in range(6):
            x, y = rng.randint(cx - half // 2, cx + half // 2), rng.randint(cy - half // 2, cy + half // 2)
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(250, 250, 250))
    return image, area / (IMAGE_SIDE * IMAGE_SIDE)


# -- several images per case ----------------------------------------------------------------
EVIDENCE_COLOURS = {"red": (205, 40, 40), "blue": (45, 70, 210)}


def make_second_image_dataset(out_dir: Path, n: int = 200, seed: int = 0) -> Path:
    """Rows of two images whose label (``colour``: red/blue) shows only in the second: the
    first is an overview with a grey square whatever the label, the text says nothing of
    it. A model reading the first image alone is at chance (docs/multi-image.md)."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        colour = rng.choice(list(EVIDENCE_COLOURS))
        paths = []
        for position, fill in enumerate(((128, 128, 128), EVIDENCE_COLOURS[colour])):
            relative = f"images/case-{index:04d}-{position + 1}.png"
            _square(fill, rng).save(out_dir / relative, format="PNG")
            paths.append(relative)
        rows.append({"id": f"case-{index:04d}", "image": paths, "text": rng.choice(NEUTRAL_SENTENCES), "colour": colour})
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="ascii")
    return manifest


NEUTRAL_SENTENCES = ("Two photos attached.", "See the pictures.", "Photos of the part, please check.", "Close-up second.")


def _square(rgb: tuple[int, int, int], rng: random.Random):
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(rng.getrandbits(32))
    side = 32
    pixels = noise.normal(140, 25, size=(side, side, 3)).clip(0, 255).astype("uint8")
    image = Image.fromarray(pixels)
    x, y = rng.randint(0, side - 14), rng.randint(0, side - 14)
    image.paste(Image.new("RGB", (14, 14), rgb), (x, y))
    return image
