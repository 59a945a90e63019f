"""Drawing the devices of generated tickets: phones, tablets, laptops, headphones, watches.

Each device is drawn upright on its own transparent layer, seen from the front (screen),
the back, or close up on its charging port. Defects that change the device's shape (a
swollen battery bowing the case, a missing part, a broken port) are drawn here; surface
damage (cracks, stains, scratches) is laid over the finished layer by `damage`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from twinlens_support_ticket.generate import screens
from twinlens_support_ticket.generate.screens import Box, ScreenContent

BODY_COLOURS = [(28, 28, 32), (232, 232, 230), (188, 190, 194), (44, 62, 110), (150, 34, 44), (64, 96, 74), (214, 190, 160)]
VIEWS = {
    "phone": ("front", "back", "port"),
    "tablet": ("front", "back", "port"),
    "laptop": ("front", "back", "port"),
    "headphones": ("front", "port"),
    "watch": ("front", "back"),
}


@dataclass
class Defects:
    bulge: bool = False
    missing: bool = False
    broken_port: bool = False


@dataclass
class Device:
    kind: str
    view: str
    image: Image.Image  # RGBA, transparent around the device
    body: Box
    screen: Box | None = None


def draw_device(kind: str, view: str, rng: random.Random, defects: Defects, content: ScreenContent | None) -> Device:
    colour = rng.choice(BODY_COLOURS)
    if view == "port":
        return _port_closeup(kind, colour, rng, defects)
    return _DRAWERS[(kind, view)](colour, rng, defects, content)


# -- shapes ---------------------------------------------------------------------------------


def _layer(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    return image, ImageDraw.Draw(image)


def _rgba(colour: tuple[int, int, int], alpha: int = 255) -> tuple[int, int, int, int]:
    return (*colour, alpha)


def _shade(colour: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + amount)) for c in colour)  # type: ignore[return-value]


def bowed_rect(box: Box, bow: float, steps: int = 24) -> list[tuple[float, float]]:
    """A rectangle whose sides bulge outwards by `bow` (fraction of the side's length)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    points: list[tuple[float, float]] = []
    for i in range(steps):  # top, left to right
        t = i / steps
        points.append((x0 + w * t, y0 - bow * w * 0.5 * math.sin(math.pi * t)))
    for i in range(steps):  # right, top to bottom
        t = i / steps
        points.append((x1 + bow * h * 0.25 * math.sin(math.pi * t), y0 + h * t))
    for i in range(steps):  # bottom, right to left
        t = i / steps
        points.append((x1 - w * t, y1 + bow * w * 0.5 * math.sin(math.pi * t)))
    for i in range(steps):  # left, bottom to top
        t = i / steps
        points.append((x0 - bow * h * 0.25 * math.sin(math.pi * t), y1 - h * t))
    return points


def _slab(draw: ImageDraw.ImageDraw, box: Box, colour: tuple[int, int, int], radius: int, bulge: bool, rng: random.Random) -> None:
    """The device's body: a rounded slab, or a pillow shape when the battery has swollen."""
    if bulge:
        draw.polygon(bowed_rect(box, rng.uniform(0.18, 0.28)), fill=_rgba(colour))
    else:
        draw.rounded_rectangle(box, radius=radius, fill=_rgba(colour), outline=_rgba(_shade(colour, -30)), width=2)


def _swelling(image: Image.Image, box: Box, rng: random.Random) -> None:
    """Glossy highlight and a dark seam: the case pushed apart from inside."""
    x0, y0, x1, y1 = box
    glow = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(glow)
    cx, cy = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * (x1 - x0), (y0 + y1) / 2
    for step in range(10, 0, -1):
        rx, ry = (x1 - x0) * 0.045 * step, (y1 - y0) * 0.045 * step
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=(255, 255, 255, 14))
    image.alpha_composite(glow)
    seam = ImageDraw.Draw(image)
    side = rng.choice(["left", "right", "top", "bottom"])
    gap = max(12, int((x1 - x0) * 0.1))
    mid_x, mid_y = (x0 + x1) / 2, (y0 + y1) / 2
    # The panel pushed off the frame: a dark wedge with the lifted edge catching the light.
    edges = {
        "left": ([(x0 + 2, y0 + 12), (x0 + 2 + gap, mid_y), (x0 + 2, y1 - 12)], [(x0 + 2 + gap, y0 + 30), (x0 + 2 + gap, y1 - 30)]),
        "right": ([(x1 - 2, y0 + 12), (x1 - 2 - gap, mid_y), (x1 - 2, y1 - 12)], [(x1 - 2 - gap, y0 + 30), (x1 - 2 - gap, y1 - 30)]),
        "top": ([(x0 + 12, y0 + 2), (mid_x, y0 + 2 + gap), (x1 - 12, y0 + 2)], [(x0 + 30, y0 + 2 + gap), (x1 - 30, y0 + 2 + gap)]),
        "bottom": ([(x0 + 12, y1 - 2), (mid_x, y1 - 2 - gap), (x1 - 12, y1 - 2)], [(x0 + 30, y1 - 2 - gap), (x1 - 30, y1 - 2 - gap)]),
    }
    wedge, lip = edges[side]
    seam.polygon(wedge, fill=(8, 8, 8, 255))
    seam.line(lip, fill=(245, 245, 240, 255), width=4)


def _screen(image: Image.Image, box: Box, content: ScreenContent | None, rng: random.Random) -> None:
    screens.paint(image, box, content or ScreenContent(kind="off"), rng)


# -- phone and tablet -------------------------------------------------------------------------


def _handheld_front(size: tuple[int, int], bezel: int, colour, rng, defects: Defects, content) -> tuple[Image.Image, Box, Box]:
    width, height = size
    margin = 36
    image, draw = _layer(width + 2 * margin, height + 2 * margin)
    body = (margin, margin, margin + width, margin + height)
    _slab(draw, body, colour, radius=max(18, width // 9), bulge=defects.bulge, rng=rng)
    frame = (body[0] + 4, body[1] + 4, body[2] - 4, body[3] - 4)
    draw.rounded_rectangle(frame, radius=max(14, width // 10), fill=(14, 14, 16, 255))
    screen = (frame[0] + bezel, frame[1] + bezel + 6, frame[2] - bezel, frame[3] - bezel - 6)
    _screen(image, screen, content, rng)
    draw.ellipse(((screen[0] + screen[2]) / 2 - 5, frame[1] + 4, (screen[0] + screen[2]) / 2 + 5, frame[1] + 14), fill=(5, 5, 8, 255))
    if defects.bulge:
        _swelling(image, body, rng)
    return image, body, screen


def _handheld_back(size: tuple[int, int], colour, rng, defects: Defects, lenses: int) -> tuple[Image.Image, Box]:
    width, height = size
    margin = 36
    image, draw = _layer(width + 2 * margin, height + 2 * margin)
    body = (margin, margin, margin + width, margin + height)
    _slab(draw, body, colour, radius=max(18, width // 9), bulge=defects.bulge, rng=rng)
    module = (body[0] + 14, body[1] + 14, body[0] + 14 + width * 0.38, body[1] + 14 + width * 0.38)
    draw.rounded_rectangle(module, radius=14, fill=_rgba(_shade(colour, -25)))
    lens = width * 0.11
    for i in range(lenses):
        cx = module[0] + lens * 1.1 + (i % 2) * lens * 1.9
        cy = module[1] + lens * 1.1 + (i // 2) * lens * 1.9
        draw.ellipse((cx - lens * 0.8, cy - lens * 0.8, cx + lens * 0.8, cy + lens * 0.8), fill=(20, 20, 24, 255), outline=(120, 120, 130, 255), width=3)
    logo = (body[0] + body[2]) / 2, (body[1] + body[3]) / 2
    draw.ellipse((logo[0] - 14, logo[1] - 14, logo[0] + 14, logo[1] + 14), outline=_rgba(_shade(colour, 25)), width=4)
    if defects.missing:
        _exposed_board(image, body, rng)
    if defects.bulge:
        _swelling(image, body, rng)
    return image, body


def _exposed_board(image: Image.Image, body: Box, rng: random.Random) -> None:
    """Part of the back cover is gone: the green circuit board and battery show through."""
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = body
    top = y0 + (y1 - y0) * rng.uniform(0.35, 0.55)
    hole = (x0 + 10, top, x1 - 10, y1 - 12)
    draw.rounded_rectangle(hole, radius=12, fill=(30, 110, 60, 255), outline=(15, 15, 15, 255), width=3)
    battery = (hole[0] + 12, hole[1] + 12, hole[2] - 12, hole[1] + (hole[3] - hole[1]) * 0.55)
    draw.rectangle(battery, fill=(70, 70, 76, 255))
    for _ in range(rng.randint(5, 9)):
        cx = rng.uniform(hole[0] + 15, hole[2] - 30)
        cy = rng.uniform(battery[3] + 6, hole[3] - 16)
        draw.rectangle((cx, cy, cx + rng.uniform(8, 24), cy + rng.uniform(6, 14)), fill=(15, 15, 15, 255))
    for _ in range(14):
        cx, cy = rng.uniform(hole[0] + 6, hole[2] - 6), rng.uniform(battery[3], hole[3] - 6)
        draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=(210, 180, 60, 255))


def _phone_front(colour, rng, defects, content) -> Device:
    image, body, screen = _handheld_front((200, 400), 8, colour, rng, defects, content)
    return Device("phone", "front", image, body, screen)


def _phone_back(colour, rng, defects, content) -> Device:
    image, body = _handheld_back((200, 400), colour, rng, defects, lenses=rng.choice([2, 3, 4]))
    return Device("phone", "back", image, body)


def _tablet_front(colour, rng, defects, content) -> Device:
    image, body, screen = _handheld_front((330, 440), 16, colour, rng, defects, content)
    return Device("tablet", "front", image, body, screen)


def _tablet_back(colour, rng, defects, content) -> Device:
    image, body = _handheld_back((330, 440), colour, rng, defects, lenses=1)
    return Device("tablet", "back", image, body)


# -- laptop ---------------------------------------------------------------------------------


def _laptop_front(colour, rng, defects, content) -> Device:
    image, draw = _layer(520, 460)
    lid = (40, 20, 480, 290)
    draw.rounded_rectangle(lid, radius=12, fill=(22, 22, 24, 255))
    screen = (lid[0] + 16, lid[1] + 16, lid[2] - 16, lid[3] - 14)
    _screen(image, screen, content, rng)
    base = [(48, 292), (472, 292), (506, 440), (14, 440)]
    body = (14, 20, 506, 440)
    if defects.bulge:
        draw.polygon(bowed_rect((30, 292, 490, 440), rng.uniform(0.08, 0.14)), fill=_rgba(colour))
    else:
        draw.polygon(base, fill=_rgba(colour), outline=_rgba(_shade(colour, -35)))
    _keyboard(draw, colour, rng, missing=defects.missing)
    pad = (200, 392, 320, 432)
    draw.rounded_rectangle(pad, radius=6, fill=_rgba(_shade(colour, -18)))
    if defects.bulge:
        draw.line([(pad[0] - 4, pad[1] - 3), (pad[2] + 4, pad[1] - 3)], fill=(10, 10, 10, 255), width=5)
        _swelling(image, (30, 292, 490, 440), rng)
    return Device("laptop", "front", image, body, screen)


def _keyboard(draw: ImageDraw.ImageDraw, colour, rng: random.Random, *, missing: bool) -> None:
    gone = _missing_keys(rng) if missing else set()
    key = _shade(colour, -60) if sum(colour) > 240 else _shade(colour, 40)
    for row in range(4):
        y = 302 + row * 22
        inset = 52 - row * 4  # the base is a trapezoid seen in perspective
        step = (420 - 2 * (inset - 52)) / 12
        for col in range(12):
            x = inset + 10 + col * step
            cell = (x, y, x + step - 6, y + 16)
            if (row, col) in gone:
                # Key cap gone: the pale membrane and the scissor clip show.
                draw.rectangle((cell[0] - 2, cell[1] - 2, cell[2] + 2, cell[3] + 2), fill=(226, 228, 232, 255))
                cx, cy = (cell[0] + cell[2]) / 2, (cell[1] + cell[3]) / 2
                draw.line([(cx - 7, cy - 5), (cx + 7, cy + 5)], fill=(60, 60, 64, 255), width=3)
                draw.line([(cx - 7, cy + 5), (cx + 7, cy - 5)], fill=(60, 60, 64, 255), width=3)
            else:
                draw.rounded_rectangle(cell, radius=3, fill=_rgba(key))


def _missing_keys(rng: random.Random) -> set[tuple[int, int]]:
    """A few neighbouring keys, as when a cluster pops off together."""
    row, col = rng.randint(0, 2), rng.randint(0, 8)
    return {(row + r, col + c) for r in range(2) for c in range(rng.randint(3, 4))}


def _laptop_back(colour, rng, defects, content) -> Device:
    image, draw = _layer(520, 380)
    body = (30, 30, 490, 350)
    _slab(draw, body, colour, radius=14, bulge=defects.bulge, rng=rng)
    draw.ellipse((235, 165, 285, 215), outline=_rgba(_shade(colour, 30)), width=5)
    if defects.bulge:
        _swelling(image, body, rng)
    return Device("laptop", "back", image, body)


# -- headphones and watch ---------------------------------------------------------------------


def _headphones_front(colour, rng, defects, content) -> Device:
    image, draw = _layer(460, 440)
    draw.arc((60, 20, 400, 380), start=190, end=350, fill=_rgba(colour), width=30)
    cushion = _shade(colour, -40) if sum(colour) > 200 else (40, 40, 44)
    missing_side = rng.choice([0, 1]) if defects.missing else None
    for side, cx in enumerate((85, 375)):
        draw.rectangle((cx - 8, 150, cx + 8, 230), fill=(150, 150, 156, 255))
        cup = (cx - 62, 220, cx + 62, 400)
        draw.rounded_rectangle(cup, radius=50, fill=_rgba(colour), outline=_rgba(_shade(colour, -40)), width=3)
        inner = (cup[0] + 14, cup[1] + 16, cup[2] - 14, cup[3] - 16)
        if side == missing_side:
            _bare_driver(draw, inner)
        else:
            draw.ellipse(inner, fill=_rgba(cushion), outline=_rgba(_shade(cushion, 25)), width=6)
    return Device("headphones", "front", image, (23, 20, 437, 400))


def _bare_driver(draw: ImageDraw.ImageDraw, inner: Box) -> None:
    """The ear cushion is missing: the driver's grille and clips are exposed."""
    draw.ellipse(inner, fill=(70, 70, 74, 255), outline=(210, 210, 210, 255), width=3)
    x0, y0, x1, y1 = inner
    for gx in range(int(x0) + 10, int(x1) - 6, 9):
        for gy in range(int(y0) + 10, int(y1) - 6, 9):
            draw.ellipse((gx - 2, gy - 2, gx + 2, gy + 2), fill=(20, 20, 20, 255))
    for angle in range(0, 360, 60):
        px = (x0 + x1) / 2 + math.cos(math.radians(angle)) * (x1 - x0) / 2
        py = (y0 + y1) / 2 + math.sin(math.radians(angle)) * (y1 - y0) / 2
        draw.rectangle((px - 5, py - 5, px + 5, py + 5), fill=(230, 230, 230, 255))


def _watch(view: str, colour, rng, defects: Defects, content) -> Device:
    image, draw = _layer(300, 520)
    strap = _shade(colour, -20)
    missing = rng.choice(["top", "bottom"]) if defects.missing else None
    if missing != "top":
        draw.rounded_rectangle((95, 10, 205, 170), radius=20, fill=_rgba(strap))
    if missing != "bottom":
        draw.rounded_rectangle((95, 350, 205, 510), radius=20, fill=_rgba(strap))
    body = (50, 140, 250, 380)
    _slab(draw, body, (120, 122, 128) if view == "front" else (90, 92, 96), radius=44, bulge=defects.bulge, rng=rng)
    if missing:
        y = 140 if missing == "top" else 380
        draw.rectangle((92, y - 8, 208, y + 8), fill=(40, 40, 40, 255))
        draw.line([(96, y), (204, y)], fill=(220, 220, 225, 255), width=4)  # the bare spring bar
    screen = None
    if view == "front":
        draw.rounded_rectangle((62, 152, 238, 368), radius=36, fill=(10, 10, 12, 255))
        screen = (74, 170, 226, 350)
        _screen(image, screen, content, rng)
    else:
        draw.ellipse((105, 215, 195, 305), fill=(30, 30, 34, 255), outline=(80, 200, 120, 255), width=4)
    if defects.bulge:
        _swelling(image, body, rng)
    return Device("watch", view, image, body, screen)


# -- port close-up ----------------------------------------------------------------------------


def _port_closeup(kind: str, colour, rng: random.Random, defects: Defects) -> Device:
    """The edge of the device filling the frame, charging port in the middle."""
    image, draw = _layer(480, 240)
    body = (20, 40, 460, 200)
    draw.rounded_rectangle(body, radius=40, fill=_rgba(colour), outline=_rgba(_shade(colour, -40)), width=3)
    draw.line([(40, 60), (440, 60)], fill=_rgba(_shade(colour, 35)), width=3)  # light catching the edge
    for side in (-1, 1):
        for i in range(6):
            cx = 240 + side * (95 + i * 16)
            draw.ellipse((cx - 4, 116, cx + 4, 124), fill=(18, 18, 18, 255))
    if defects.broken_port:
        _broken_port(image, colour, rng)
    else:
        draw.rounded_rectangle((190, 106, 290, 134), radius=13, fill=(14, 14, 14, 255), outline=(150, 150, 155, 255), width=2)
        draw.rounded_rectangle((208, 117, 272, 123), radius=2, fill=(120, 120, 126, 255))
    return Device(kind, "port", image, body)


def _broken_port(image: Image.Image, colour, rng: random.Random) -> None:
    """A bent, torn port: skewed opening, bent tongue, cracks and a chipped edge."""
    draw = ImageDraw.Draw(image)
    skew = rng.uniform(18, 30) * rng.choice([-1, 1])
    opening = [(188, 104 - skew * 0.3), (292, 106 + skew * 0.5), (288, 138 + skew * 0.3), (192, 134 - skew * 0.4)]
    draw.polygon(opening, fill=(10, 10, 10, 255), outline=(170, 160, 150, 255))
    draw.line([(206, 122), (240, 120 + skew * 0.6), (270, 116 + skew)], fill=(190, 190, 196, 255), width=8)
    for _ in range(rng.randint(4, 7)):
        x, y = rng.choice(opening)
        angle = rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _ in range(3):
            angle += rng.uniform(-0.5, 0.5)
            x, y = x + math.cos(angle) * rng.uniform(16, 36), y + math.sin(angle) * rng.uniform(10, 24)
            points.append((x, y))
        crack = (20, 20, 20) if sum(colour) > 300 else (235, 235, 235)
        draw.line(points, fill=_rgba(crack), width=4)
    chip_x = rng.uniform(200, 280)
    draw.polygon([(chip_x - 34, 40), (chip_x + 30, 40), (chip_x + 4, 78)], fill=(0, 0, 0, 0))
    for _ in range(rng.randint(6, 12)):
        dx, dy = rng.uniform(170, 310), rng.uniform(140, 185)
        draw.ellipse((dx - 4, dy - 4, dx + 4, dy + 4), fill=(90, 80, 70, 255))


_DRAWERS = {
    ("phone", "front"): _phone_front,
    ("phone", "back"): _phone_back,
    ("tablet", "front"): _tablet_front,
    ("tablet", "back"): _tablet_back,
    ("laptop", "front"): _laptop_front,
    ("laptop", "back"): _laptop_back,
    ("headphones", "front"): _headphones_front,
    ("watch", "front"): lambda colour, rng, defects, content: _watch("front", colour, rng, defects, content),
    ("watch", "back"): lambda colour, rng, defects, content: _watch("back", colour, rng, defects, content),
}
