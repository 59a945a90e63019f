"""Generated radiograph-like chest images (for demos and tests; not real anatomy).

A frontal chest film drawn with numpy: dark air outside the body, soft tissue, two lung
fields with branching vessel markings, posterior ribs and clavicles, spine, mediastinum and
heart silhouette, diaphragm domes with sharp costophrenic angles. Each finding is drawn
with a strength in [0, 1] ("conspicuity"): 0 leaves no trace in the pixels, which is how
the generated data set makes some findings visible only in the report.

Bright = dense (MONOCHROME2 convention). Image x grows to the patient's left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Anatomy:
    size: int
    cx: float  # body midline (0..1)
    top: float  # lung apices
    base: float  # diaphragm domes
    half_width: float  # half thorax width
    heart_ratio: float  # cardiothoracic ratio
    mediastinum: float  # half width of the upper mediastinum


class Canvas:
    def __init__(self, size: int):
        self.size = size
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.y, self.x = np.meshgrid(grid, grid, indexing="ij")
        self.pixels = np.zeros((size, size), dtype=np.float32)
        self.markings = np.zeros((size, size), dtype=np.float32)  # vessel markings (pneumothorax erases them)
        self.ribs: list[np.ndarray] = []  # rib centre lines (a fracture breaks one)

    def add(self, amount: np.ndarray | float, mask: np.ndarray | None = None) -> None:
        self.pixels += amount if mask is None else amount * mask

    def line(self, points: np.ndarray, width: float, amount: float) -> None:
        """Add a soft polyline; `points` (n, 2) in (x, y) unit coordinates, width in units."""
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
            self.add(amount, self._segment(x0, y0, x1, y1, width))

    def _segment(self, x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
        """Soft mask of a thick segment, computed only inside its bounding box (speed)."""
        mask = np.zeros_like(self.pixels)
        lo = np.floor((np.minimum([x0, y0], [x1, y1]) - width) * self.size).astype(int).clip(0, self.size)
        hi = np.ceil((np.maximum([x0, y0], [x1, y1]) + width) * self.size).astype(int).clip(0, self.size)
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            return mask
        xs, ys = self.x[lo[1] : hi[1], lo[0] : hi[0]], self.y[lo[1] : hi[1], lo[0] : hi[0]]
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy or 1e-9), 0.0, 1.0)
        distance = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))
        mask[lo[1] : hi[1], lo[0] : hi[0]] = np.clip(1.0 - distance / width, 0.0, 1.0)
        return mask

    def blob(self, x: float, y: float, rx: float, ry: float, sharpness: float = 2.0) -> np.ndarray:
        r = ((self.x - x) / rx) ** 2 + ((self.y - y) / ry) ** 2
        return np.exp(-(r**sharpness))


def random_anatomy(rng: np.random.Generator, size: int) -> Anatomy:
    return Anatomy(size=size, cx=0.5 + rng.normal(0, 0.015), top=0.14 + rng.normal(0, 0.015),
                   base=0.76 + rng.normal(0, 0.02), half_width=0.34 + rng.normal(0, 0.015),
                   heart_ratio=float(np.clip(rng.normal(0.42, 0.03), 0.34, 0.48)),
                   mediastinum=0.075 + abs(rng.normal(0, 0.006)))


def lung_masks(canvas: Canvas, anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the right (image-left) and left (image-right) lung fields: a rounded apex,
    straight walls, and a diaphragm dome meeting the lateral wall at a sharp angle."""
    masks = []
    for side in (-1, 1):
        u = (canvas.x - (anatomy.cx + side * anatomy.half_width * 0.52)) / (anatomy.half_width * 0.47)
        ry = (anatomy.base - anatomy.top) * 0.62
        yc = anatomy.top + ry
        upper = (u**2 + ((canvas.y - yc) / ry) ** 2 < 1.0) & (canvas.y <= yc)
        dome = anatomy.base - 0.07 * np.clip(1 - u**2, 0, 1)
        lower = (np.abs(u) < 1.0) & (canvas.y > yc) & (canvas.y < dome)
        masks.append((upper | lower).astype(np.float32))
    return masks[0], masks[1]


def draw_base(canvas: Canvas, anatomy: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    body = canvas.blob(anatomy.cx, 0.55, anatomy.half_width * 1.28, 0.62, sharpness=3.0)
    canvas.add(0.5 * body)
    # The heart hides the medial lower lung: its border is the lungs' border there.
    heart = _heart(canvas, anatomy, anatomy.heart_ratio)
    right, left = (mask * (1.0 - heart) for mask in lung_masks(canvas, anatomy))
    canvas.add(-LUNG_AIR, right + left)
    _draw_mediastinum(canvas, anatomy)
    _draw_ribs(canvas, anatomy, rng)
    _draw_vessels(canvas, anatomy, rng, right, left)
    canvas.add(0.12, (canvas.y > anatomy.base + 0.05) * body)  # abdomen under the domes
    return right, left


HEART_DENSITY = 0.1  # over the soft-tissue level
LUNG_AIR = 0.34  # how much darker aerated lung is than soft tissue


def _heart(canvas: Canvas, anatomy: Anatomy, ratio: float) -> np.ndarray:
    """Heart silhouette: wider than it is tall, sitting on the diaphragm, left of midline."""
    half = ratio * anatomy.half_width
    return canvas.blob(anatomy.cx + half * 0.25, anatomy.base - 0.1, half, 0.12, sharpness=4.0)


def _draw_mediastinum(canvas: Canvas, anatomy: Anatomy) -> None:
    upper = (np.abs(canvas.x - anatomy.cx) < anatomy.mediastinum) & (canvas.y > anatomy.top - 0.04) & (
        canvas.y < anatomy.top + 0.3)
    canvas.add(0.15, upper.astype(np.float32))
    canvas.add(HEART_DENSITY * _heart(canvas, anatomy, anatomy.heart_ratio))
    spine = np.abs(canvas.x - anatomy.cx) < 0.035
    canvas.add(0.06, spine.astype(np.float32))


def _draw_ribs(canvas: Canvas, anatomy: Anatomy, rng: np.random.Generator) -> list[np.ndarray]:
    ribs = []
    for side in (-1, 1):
        for index in range(9):
            y0 = anatomy.top + 0.01 + index * (anatomy.base - anatomy.top) / 9.5
            xs = np.linspace(0.0, 1.0, 12)
            px = anatomy.cx + side * (0.03 + xs * anatomy.half_width * 1.02)
            py = y0 + 0.09 * xs**1.4 - 0.05 * xs**3 + rng.normal(0, 0.002)
            points = np.stack([px, py], axis=1)
            canvas.line(points, 0.011, 0.11)
            ribs.append(points)
    for side in (-1, 1):  # clavicles
        xs = np.linspace(0.02, anatomy.half_width * 0.95, 8)
        points = np.stack([anatomy.cx + side * xs, anatomy.top - 0.02 + 0.05 * (xs / anatomy.half_width) ** 2], axis=1)
        canvas.line(points, 0.014, 0.2)
    canvas.ribs = ribs
    return ribs


def _draw_vessels(canvas: Canvas, anatomy: Anatomy, rng: np.random.Generator, right: np.ndarray,
                  left: np.ndarray) -> None:
    markings = Canvas(canvas.size)
    for side in (-1, 1):
        hilum = (anatomy.cx + side * 0.09, anatomy.top + 0.3)
        for _ in range(14):
            _branch(markings, rng, hilum, angle=rng.uniform(-2.6, 2.6) if side > 0 else rng.uniform(0.5, 5.8),
                    side=side, length=0.06, depth=3, width=0.006)
    canvas.markings = markings.pixels * (right + left)
    canvas.add(canvas.markings)


def _branch(canvas: Canvas, rng: np.random.Generator, start: tuple[float, float], angle: float, side: int,
            length: float, depth: int, width: float) -> None:
    # Vessels fan outwards from the hilum; force the x direction to point laterally.
    dx, dy = np.cos(angle), np.sin(angle)
    dx = abs(dx) * side
    end = (start[0] + dx * length, start[1] + dy * length * 0.9)
    canvas.line(np.array([start, end]), width, 0.07 * (depth + 1) / 4)
    if depth > 0:
        for turn in (-0.45, 0.45):
            _branch(canvas, rng, end, angle + turn + rng.normal(0, 0.2), side, length * 0.8, depth - 1, width * 0.8)


# -- findings ---------------------------------------------------------------------------
def draw_findings(canvas: Canvas, anatomy: Anatomy, strengths: dict[str, float], rng: np.random.Generator,
                  lungs: tuple[np.ndarray, np.ndarray]) -> None:
    """Draw every finding with strength > 0 (0 = invisible, 1 = obvious)."""
    for name, strength in strengths.items():
        if strength > 0 and name in _DRAWERS:
            _DRAWERS[name](canvas, anatomy, strength, rng, lungs)


def _side_mask(lungs: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[int, np.ndarray]:
    side = int(rng.integers(0, 2))
    return (-1 if side == 0 else 1), lungs[side]


def _cardiomegaly(canvas, anatomy, strength, rng, lungs):
    enlarged = anatomy.heart_ratio + strength * rng.uniform(0.16, 0.26)
    growth = np.clip(_heart(canvas, anatomy, enlarged) - _heart(canvas, anatomy, anatomy.heart_ratio), 0, 1)
    canvas.add((LUNG_AIR + HEART_DENSITY) * growth * np.clip(lungs[0] + lungs[1], 0, 1))


def _enlarged_cardiomediastinum(canvas, anatomy, strength, rng, lungs):
    widen = strength * rng.uniform(0.05, 0.08)
    band = (np.abs(canvas.x - anatomy.cx) < anatomy.mediastinum + widen) & (
        np.abs(canvas.x - anatomy.cx) >= anatomy.mediastinum) & (canvas.y > anatomy.top - 0.03) & (
        canvas.y < anatomy.top + 0.28)
    canvas.add(0.35 * strength, band.astype(np.float32))


def _patchy(canvas, rng, x, y, radius, amount, mask):
    texture = np.clip(canvas.blob(x, y, radius, radius * 1.2, 1.4) * (0.7 + 0.6 * rng.random(canvas.pixels.shape)), 0, 1)
    canvas.add(amount * texture * mask)


def _lung_point(anatomy, side, rng, zone=(0.3, 0.85)):
    x = anatomy.cx + side * anatomy.half_width * rng.uniform(0.35, 0.7)
    y = anatomy.top + (anatomy.base - anatomy.top) * rng.uniform(*zone)
    return x, y


def _lung_opacity(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    x, y = _lung_point(anatomy, side, rng)
    _patchy(canvas, rng, x, y, rng.uniform(0.07, 0.11), 0.3 * strength, mask)


def _consolidation(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    x, y = _lung_point(anatomy, side, rng, zone=(0.55, 0.9))
    radius = rng.uniform(0.08, 0.12)
    canvas.add(0.42 * strength * canvas.blob(x, y, radius * 1.2, radius, 3.0) * mask)
    for _ in range(3):  # air bronchograms: dark branching lines inside the dense area
        angle = rng.uniform(0, np.pi)
        end = (x + np.cos(angle) * radius * 0.8, y + np.sin(angle) * radius * 0.6)
        bronchus = canvas._segment(x, y, end[0], end[1], 0.006)
        canvas.add(-0.18 * strength * bronchus * mask)


def _pneumonia(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    x, y = _lung_point(anatomy, side, rng, zone=(0.5, 0.9))
    _patchy(canvas, rng, x, y, rng.uniform(0.08, 0.12), 0.36 * strength, mask)


def _edema(canvas, anatomy, strength, rng, lungs):
    lung = lungs[0] + lungs[1]
    for side in (-1, 1):
        haze = canvas.blob(anatomy.cx + side * 0.12, anatomy.top + 0.32, 0.16, 0.2, 1.2)
        canvas.add(0.26 * strength * haze * lung)
        for _ in range(5):  # Kerley B lines at the lateral bases
            y = anatomy.base - rng.uniform(0.02, 0.12)
            x = anatomy.cx + side * anatomy.half_width * 0.88
            canvas.line(np.array([[x, y], [x - side * 0.04, y]]), 0.003, 0.12 * strength)


def _atelectasis(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    x, y = _lung_point(anatomy, side, rng, zone=(0.7, 0.9))
    tilt = rng.normal(0, 0.02)
    points = np.array([[x - 0.08, y - tilt], [x + 0.08, y + tilt]])
    band = canvas._segment(*points[0], *points[1], 0.02)
    canvas.add(0.4 * strength * band * mask)


def _lung_lesion(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    x, y = _lung_point(anatomy, side, rng, zone=(0.2, 0.75))
    radius = rng.uniform(0.03, 0.05)
    canvas.add(0.45 * strength * canvas.blob(x, y, radius, radius, 4.0) * mask)


def _pneumothorax(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    centre = anatomy.cx + side * anatomy.half_width * 0.52
    depth = strength * rng.uniform(0.1, 0.17)
    # Space between the chest wall and the collapsed lung edge, apex and lateral side.
    edge_x = centre + side * (anatomy.half_width * 0.47 - depth)
    lateral = (side * (canvas.x - edge_x) > 0)
    apical = canvas.y < anatomy.top + depth * 1.5
    space = mask * np.clip(lateral + apical, 0, 1) * (canvas.y < anatomy.base - 0.05)
    canvas.add(-canvas.markings * space)  # no lung markings beyond the edge
    canvas.add(-0.16 * strength, space)
    ys = np.linspace(anatomy.top + depth * 1.5, anatomy.base - 0.07, 10)
    pleura = np.stack([np.full_like(ys, edge_x) - side * 0.01 * np.sin(np.linspace(0, np.pi, 10)), ys], axis=1)
    canvas.line(pleura, 0.006, 0.3 * strength)


def _pleural_effusion(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    level = anatomy.base - strength * rng.uniform(0.1, 0.2)
    centre = anatomy.cx + side * anatomy.half_width * 0.52
    # Meniscus: the fluid climbs higher at the lateral wall, blunting the angle.
    meniscus = level - 0.07 * strength * np.clip(side * (canvas.x - centre) / (anatomy.half_width * 0.47), 0, 1) ** 2
    fluid = np.clip((canvas.y - meniscus) / 0.02, 0, 1)
    canvas.add(0.45 * fluid * mask)


def _pleural_other(canvas, anatomy, strength, rng, lungs):
    side, mask = _side_mask(lungs, rng)
    centre = anatomy.cx + side * anatomy.half_width * 0.52
    wall = anatomy.half_width * 0.47
    ring = np.clip(1 - np.abs(np.abs(canvas.x - centre) - wall * 0.9) / 0.03, 0, 1)
    zone = (canvas.y > anatomy.top + 0.1) & (canvas.y < anatomy.base - 0.1) & (side * (canvas.x - centre) > 0)
    canvas.add(0.35 * strength * ring * zone * mask)


def _fracture(canvas, anatomy, strength, rng, lungs):
    ribs = canvas.ribs
    points = ribs[int(rng.integers(0, len(ribs)))]
    k = int(rng.integers(5, 9))
    (x0, y0), (x1, y1) = points[k], points[k + 1]
    gap = canvas.blob((x0 + x1) / 2, (y0 + y1) / 2, 0.018, 0.025, 2.0)
    canvas.add(-0.2 * strength * gap)
    shifted = points[k + 1 :] + np.array([0.0, 0.02 * strength])
    canvas.line(shifted, 0.012, 0.2 * strength)


def _support_devices(canvas, anatomy, strength, rng, lungs):
    kinds = rng.choice(["et_tube", "central_line", "pacemaker", "ng_tube", "leads"], size=int(rng.integers(1, 3)),
                       replace=False)
    for kind in kinds:
        _DEVICES[kind](canvas, anatomy, strength, rng)


def _et_tube(canvas, anatomy, strength, rng):
    x = anatomy.cx + rng.normal(0, 0.005)
    for offset in (-0.008, 0.008):
        canvas.line(np.array([[x + offset, 0.0], [x + offset, anatomy.top + 0.12]]), 0.006, 0.5 * strength)


def _central_line(canvas, anatomy, strength, rng):
    side = rng.choice([-1, 1])
    start = (anatomy.cx + side * anatomy.half_width * 0.9, anatomy.top - 0.01)
    mid = (anatomy.cx + side * 0.06, anatomy.top + 0.05)
    end = (anatomy.cx + side * 0.02, anatomy.top + 0.22 + rng.uniform(0, 0.06))
    canvas.line(np.array([start, mid, end]), 0.007, 0.55 * strength)


def _pacemaker(canvas, anatomy, strength, rng):
    x, y = anatomy.cx + 0.24, anatomy.top + 0.02
    box = (np.abs(canvas.x - x) < 0.035) & (np.abs(canvas.y - y) < 0.025)
    canvas.add(0.6 * strength, box.astype(np.float32))
    canvas.line(np.array([[x, y], [anatomy.cx + 0.05, anatomy.top + 0.2], [anatomy.cx + 0.08, anatomy.base - 0.12]]),
                0.006, 0.5 * strength)


def _ng_tube(canvas, anatomy, strength, rng):
    x = anatomy.cx - 0.015
    canvas.line(np.array([[x, 0.0], [x, anatomy.base], [x + 0.08, anatomy.base + 0.08]]), 0.007, 0.5 * strength)


def _leads(canvas, anatomy, strength, rng):
    for _ in range(3):
        x, y = anatomy.cx + rng.uniform(-0.3, 0.3), anatomy.top + rng.uniform(0.0, 0.5)
        ring = np.clip(1 - np.abs(np.hypot(canvas.x - x, canvas.y - y) - 0.02) / 0.007, 0, 1)
        canvas.add(0.55 * strength * ring)
        canvas.line(np.array([[x, y], [x + rng.uniform(-0.1, 0.1), y + 0.12]]), 0.0025, 0.3 * strength)


_DEVICES = {"et_tube": _et_tube, "central_line": _central_line, "pacemaker": _pacemaker, "ng_tube": _ng_tube,
            "leads": _leads}
_DRAWERS = {
    "Enlarged Cardiomediastinum": _enlarged_cardiomediastinum, "Cardiomegaly": _cardiomegaly,
    "Lung Opacity": _lung_opacity, "Lung Lesion": _lung_lesion, "Edema": _edema, "Consolidation": _consolidation,
    "Pneumonia": _pneumonia, "Atelectasis": _atelectasis, "Pneumothorax": _pneumothorax,
    "Pleural Effusion": _pleural_effusion, "Pleural Other": _pleural_other, "Fracture": _fracture,
    "Support Devices": _support_devices,
}


def render_radiograph(strengths: dict[str, float], rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A radiograph-like image in [0, 1] with the given findings drawn at their strengths."""
    canvas = Canvas(size)
    anatomy = random_anatomy(rng, size)
    lungs = draw_base(canvas, anatomy, rng)
    draw_findings(canvas, anatomy, strengths, rng, lungs)
    return _expose(canvas.pixels, rng)


def _expose(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Film-like finish: blur, exposure and gamma variation, quantum noise."""
    pixels = _box_blur(pixels, 1)
    pixels = pixels * rng.uniform(0.85, 1.1) + rng.normal(0, 0.03)
    pixels = np.clip(pixels + 0.08, 0, 1) ** rng.uniform(0.85, 1.2)
    pixels = pixels + rng.normal(0, 0.015, pixels.shape)
    return np.clip(pixels, 0, 1).astype(np.float32)


def _box_blur(pixels: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(pixels, radius, mode="edge")
    out = np.zeros_like(pixels)
    k = 2 * radius + 1
    for dy in range(k):
        for dx in range(k):
            out += padded[dy : dy + pixels.shape[0], dx : dx + pixels.shape[1]]
    return out / (k * k)
