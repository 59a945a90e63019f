"""Classical image features: no weights, no training, a few milliseconds per image.

A network learning from scratch on a few hundred photos often loses to a linear model on
hand-made features, so every training run keeps one as a baseline and ensemble member.
The features are the usual ones for that job, each at a coarse-to-fine spatial pyramid so
both global appearance and layout count:

- colour: an 8x8 RGB thumbnail and a 16-bin histogram per channel;
- intensity layout: a 16x16 grey thumbnail;
- shape: histograms of gradient orientation (9 unsigned bins, magnitude-weighted) over
  1x1, 2x2, 4x4 and 6x6 cells;
- texture: histograms of uniform local binary patterns (8 neighbours) at two scales over
  1x1 and 2x2 cells.

Histograms are normalised per cell and square-rooted (the Hellinger map), which makes a
linear model on them behave like a histogram-intersection kernel. Pure numpy + PIL.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WORK_SIDE = 96  # images are resized to this square before the features are computed
_ORIENTATION_BINS = 9
_HOG_GRIDS = (1, 2, 4, 6)
_LBP_GRIDS = (1, 2)


def _uniform_lbp_table() -> np.ndarray:
    """Map each 8-bit pattern to one of 59 codes: 58 uniform patterns + one for the rest."""
    table = np.full(256, 58, dtype=np.int64)
    code = 0
    for pattern in range(256):
        bits = [(pattern >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        if transitions <= 2:
            table[pattern] = code
            code += 1
    return table


_LBP_TABLE = _uniform_lbp_table()
_LBP_CODES = 59


def feature_size() -> int:
    colour = 8 * 8 * 3 + 16 * 3
    grey = 16 * 16
    hog = _ORIENTATION_BINS * sum(g * g for g in _HOG_GRIDS)
    lbp = 2 * _LBP_CODES * sum(g * g for g in _LBP_GRIDS)
    return colour + grey + hog + lbp


def image_features(image: Image.Image) -> np.ndarray:
    """One float32 vector of `feature_size()` values for a PIL image."""
    rgb = image.convert("RGB")
    if rgb.size != (WORK_SIDE, WORK_SIDE):
        rgb = rgb.resize((WORK_SIDE, WORK_SIDE), Image.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    parts = [
        _thumbnail(rgb, 8).ravel(),
        _channel_histograms(pixels),
        _thumbnail(Image.fromarray((grey * 255).astype(np.uint8)), 16).ravel(),
        _orientation_histograms(grey),
        _lbp_histograms(grey),
        _lbp_histograms(_halve(grey)),
    ]
    return np.concatenate(parts).astype(np.float32)


def many_image_features(images: list[Image.Image | None]) -> tuple[np.ndarray, np.ndarray]:
    """(features, present) for a list of images; missing images give zero rows."""
    features = np.zeros((len(images), feature_size()), dtype=np.float32)
    present = np.zeros(len(images), dtype=bool)
    for row, image in enumerate(images):
        if image is not None:
            features[row], present[row] = image_features(image), True
    return features, present


def _thumbnail(image: Image.Image, side: int) -> np.ndarray:
    return np.asarray(image.resize((side, side), Image.BOX), dtype=np.float32) / 255.0


def _channel_histograms(pixels: np.ndarray, bins: int = 16) -> np.ndarray:
    counts = [np.histogram(pixels[..., c], bins=bins, range=(0.0, 1.0))[0] for c in range(3)]
    return np.sqrt(np.concatenate(counts) / pixels[..., 0].size)


def _halve(grey: np.ndarray) -> np.ndarray:
    side = grey.shape[0] // 2 * 2
    g = grey[:side, :side]
    return 0.25 * (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2])


def _cell_histograms(codes: np.ndarray, weights: np.ndarray, bins: int, grids: tuple[int, ...]) -> np.ndarray:
    """Histogram of `codes` (ints < bins) per cell of each grid, L1-normalised, sqrt."""
    side = codes.shape[0]
    out = []
    for grid in grids:
        edges = np.linspace(0, side, grid + 1).astype(int)
        for i in range(grid):
            for j in range(grid):
                cell = (slice(edges[i], edges[i + 1]), slice(edges[j], edges[j + 1]))
                hist = np.bincount(codes[cell].ravel(), weights=weights[cell].ravel(), minlength=bins)
                out.append(np.sqrt(hist / (hist.sum() + 1e-6)))
    return np.concatenate(out)


def _orientation_histograms(grey: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation
    codes = np.minimum((angle / np.pi * _ORIENTATION_BINS).astype(np.int64), _ORIENTATION_BINS - 1)
    return _cell_histograms(codes, magnitude, _ORIENTATION_BINS, _HOG_GRIDS)


def _lbp_histograms(grey: np.ndarray) -> np.ndarray:
    centre = grey[1:-1, 1:-1]
    height, width = grey.shape
    pattern = np.zeros(centre.shape, dtype=np.int64)
    offsets = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    for bit, (dy, dx) in enumerate(offsets):
        neighbour = grey[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx]
        pattern |= (neighbour >= centre).astype(np.int64) << bit
    codes = _LBP_TABLE[pattern]
    return _cell_histograms(codes, np.ones_like(centre), _LBP_CODES, _LBP_GRIDS)
