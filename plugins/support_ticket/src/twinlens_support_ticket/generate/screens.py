"""What a generated device's screen shows: off, home screen, lock screen or a message.

Messages are drawn large and dark-on-light (or light-on-blue for a crash screen) so the
OCR can read them back from the photo, and each carries the code the tests look for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ScreenContent:
    kind: str  # off | home | lock | dialog | crash
    title: str = ""
    lines: tuple[str, ...] = ()
    code: str = ""
    accent: tuple[int, int, int] = (200, 40, 40)
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What a perfect OCR would read, line by line."""
        parts = [self.title, *self.lines, self.code_line]
        return "\n".join(part for part in parts if part)

    @property
    def code_line(self) -> str:
        return f"Code {self.code}" if self.code else ""


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled scalable font: present wherever Pillow is, no system fonts needed.
    return ImageFont.load_default(size=size)


def paint(image: Image.Image, box: Box, content: ScreenContent, rng: random.Random) -> None:
    """Draw `content` into `box` of an RGBA device layer."""
    {"off": _off, "home": _home, "lock": _lock, "dialog": _dialog, "crash": _crash}[content.kind](
        image, box, content, rng
    )


def _off(image: Image.Image, box: Box, content: ScreenContent, rng: random.Random) -> None:
    draw = ImageDraw.Draw(image)
    shade = rng.randint(8, 28)
    draw.rectangle(box, fill=(shade, shade, shade + 4, 255))
    # A soft diagonal reflection: glass, not a painted rectangle.
    x0, y0, x1, y1 = box
    glare = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(glare).polygon(
        [(x0, y0 + (y1 - y0) * 0.2), (x0 + (x1 - x0) * 0.5, y0), (x0 + (x1 - x0) * 0.7, y0), (x0, y0 + (y1 - y0) * 0.45)],
        fill=(255, 255, 255, rng.randint(10, 30)),
    )
    image.alpha_composite(glare)


def _wallpaper(image: Image.Image, box: Box, rng: random.Random) -> None:
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    top = [rng.randint(20, 200) for _ in range(3)]
    bottom = [rng.randint(20, 200) for _ in range(3)]
    height = max(1, y1 - y0)
    for row in range(y0, y1 + 1):
        t = (row - y0) / height
        draw.line([(x0, row), (x1, row)], fill=tuple(int(a * (1 - t) + b * t) for a, b in zip(top, bottom)) + (255,))


def _home(image: Image.Image, box: Box, content: ScreenContent, rng: random.Random) -> None:
    _wallpaper(image, box, rng)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    width = x1 - x0
    cols = 4 if width < 260 else 6
    cell = width / cols
    icon = cell * 0.62
    rows = int((y1 - y0 - cell) // cell)
    for row in range(max(1, rows)):
        for col in range(cols):
            cx = x0 + cell * (col + 0.5)
            cy = y0 + cell * (row + 0.9)
            colour = tuple(rng.randint(40, 240) for _ in range(3)) + (255,)
            draw.rounded_rectangle((cx - icon / 2, cy - icon / 2, cx + icon / 2, cy + icon / 2), radius=icon / 4, fill=colour)


def _lock(image: Image.Image, box: Box, content: ScreenContent, rng: random.Random) -> None:
    _wallpaper(image, box, rng)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, _ = box
    clock = f"{rng.randint(6, 23)}:{rng.randint(0, 59):02d}"
    size = max(14, (x1 - x0) // 4)
    draw.text(((x0 + x1) / 2, y0 + size * 1.6), clock, font=font(size), fill=(250, 250, 250, 255), anchor="mm")


def _dialog(image: Image.Image, box: Box, content: ScreenContent, rng: random.Random) -> None:
    _wallpaper(image, box, rng)
    x0, y0, x1, y1 = box
    dim = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(dim).rectangle(box, fill=(0, 0, 0, 110))
    image.alpha_composite(dim)
    draw = ImageDraw.Draw(image)
    width = x1 - x0
    margin = width * 0.05
    size = _fit_size(content, width - 4 * margin)
    lines = [(content.title, size + 2, content.accent), *((line, size, (25, 25, 25)) for line in content.lines),
             (content.code_line, size + 2, (20, 20, 20))]
    height = sum(s * 1.45 for _, s, _ in lines) + 2 * margin
    top = (y0 + y1) / 2 - height / 2
    draw.rounded_rectangle((x0 + margin, top, x1 - margin, top + height), radius=margin, fill=(246, 246, 246, 255))
    _write_lines(draw, lines, x0 + 2 * margin, top + margin)


def _crash(image: Image.Image, box: Box, content: ScreenContent, rng: random.Random) -> None:
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, fill=(20, 70, 170, 255))
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    size = _fit_size(content, width * 0.84)
    # Five text rows (the big ":(" counts double) must fit 85% of the height too.
    size = min(size, int(height * 0.85 / (1.45 * (len(content.lines) + 4))))
    lines = [(":(", size * 2, (250, 250, 250)), (content.title, size + 2, (250, 250, 250)),
             *((line, size, (235, 235, 245)) for line in content.lines), (content.code_line, size + 2, (250, 250, 250))]
    _write_lines(draw, lines, x0 + width * 0.08, y0 + height * 0.06)


def _write_lines(draw: ImageDraw.ImageDraw, lines: list, left: float, top: float) -> None:
    for text, size, colour in lines:
        if text:
            draw.text((left, top), text, font=font(int(size)), fill=tuple(colour) + (255,))
        top += size * 1.45


def _fit_size(content: ScreenContent, width: float) -> int:
    """The largest font size (capped) at which every line fits the given width."""
    texts = [content.title, *content.lines, content.code_line]
    for size in range(34, 9, -1):
        if all(font(size + 2).getlength(text) <= width for text in texts if text):
            return size
    return 10
