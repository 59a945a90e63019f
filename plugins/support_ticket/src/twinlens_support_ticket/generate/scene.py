"""Photographic variety for generated tickets: backgrounds, camera pose, lighting, sensor noise.

Everything here is drawn with PIL and numpy from a seeded `random.Random`, so a data set is
reproducible from its seed.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

CANVAS = 384


def background(rng: random.Random, size: int = CANVAS) -> Image.Image:
    """A surface the device lies on or is held in front of."""
    kind = rng.choice(["wood", "desk", "fabric", "tiles", "gradient"])
    image = _BACKGROUNDS[kind](rng, size)
    return _add_noise(image, rng, sigma=rng.uniform(2, 6))


def _wood(rng: random.Random, size: int) -> Image.Image:
    base = np.array([rng.randint(110, 190), rng.randint(70, 130), rng.randint(30, 80)], dtype=np.float32)
    y = np.arange(size, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    period, wobble = rng.uniform(7, 16), rng.uniform(4, 12)
    grain = np.sin((y + wobble * np.sin(x / rng.uniform(30, 70))) / period * 2 * math.pi)
    shade = 1.0 + 0.12 * grain[..., None]
    array = np.clip(base * shade + np.zeros((size, size, 1)), 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    return image.rotate(rng.choice([0, 90]))


def _desk(rng: random.Random, size: int) -> Image.Image:
    grey = rng.choice([rng.randint(200, 240), rng.randint(40, 80), rng.randint(120, 170)])
    tint = [grey + rng.randint(-12, 12) for _ in range(3)]
    return Image.new("RGB", (size, size), tuple(max(0, min(255, c)) for c in tint))


def _fabric(rng: random.Random, size: int) -> Image.Image:
    a = tuple(rng.randint(40, 200) for _ in range(3))
    b = tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in a)
    image = Image.new("RGB", (size, size), a)
    draw = ImageDraw.Draw(image)
    step = rng.randint(6, 20)
    for offset in range(-size, size, step):
        draw.line([(offset, 0), (offset + size, size)], fill=b, width=max(1, step // 3))
    return image.filter(ImageFilter.GaussianBlur(0.8))


def _tiles(rng: random.Random, size: int) -> Image.Image:
    tile = tuple(rng.randint(170, 235) for _ in range(3))
    grout = tuple(max(0, c - rng.randint(40, 80)) for c in tile)
    image = Image.new("RGB", (size, size), tile)
    draw = ImageDraw.Draw(image)
    step = rng.randint(60, 130)
    for pos in range(rng.randint(0, step), size, step):
        draw.line([(pos, 0), (pos, size)], fill=grout, width=3)
        draw.line([(0, pos), (size, pos)], fill=grout, width=3)
    return image


def _gradient(rng: random.Random, size: int) -> Image.Image:
    top = np.array([rng.randint(30, 230) for _ in range(3)], dtype=np.float32)
    bottom = np.array([rng.randint(30, 230) for _ in range(3)], dtype=np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    array = top * (1 - t) + bottom * t + np.zeros((1, size, 1), dtype=np.float32)
    return Image.fromarray(array.astype(np.uint8))


_BACKGROUNDS = {"wood": _wood, "desk": _desk, "fabric": _fabric, "tiles": _tiles, "gradient": _gradient}


def puddle(scene: Image.Image, rng: random.Random) -> None:
    """Spilled liquid on the surface: a flat, glossy, irregular pool with bright glints."""
    size = scene.width
    layer = Image.new("RGBA", scene.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    tint = rng.choice([(150, 175, 200), (120, 90, 50), (190, 200, 210)])
    for _ in range(rng.randint(2, 3)):
        cx, cy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size
        radius = rng.uniform(0.18, 0.32) * size
        phases = [rng.uniform(0, 2 * math.pi) for _ in range(3)]
        outline = []
        for i in range(40):
            angle = 2 * math.pi * i / 40
            wobble = 1 + sum(0.2 / (k + 1) * math.sin((k + 2) * angle + phases[k]) for k in range(3))
            outline.append((cx + math.cos(angle) * radius * wobble, cy + math.sin(angle) * radius * wobble * 0.7))
        draw.polygon(outline, fill=(*tint, 120), outline=(255, 255, 255, 150))
        for _ in range(rng.randint(2, 4)):  # reflections of the room's lights
            gx, gy = cx + rng.uniform(-0.5, 0.5) * radius, cy + rng.uniform(-0.4, 0.4) * radius
            draw.ellipse((gx - 10, gy - 4, gx + 10, gy + 4), fill=(255, 255, 255, 200))
    scene.paste(layer.filter(ImageFilter.GaussianBlur(1.2)), (0, 0), layer.filter(ImageFilter.GaussianBlur(1.2)))


def place(
    scene: Image.Image,
    device: Image.Image,
    rng: random.Random,
    *,
    scale: float,
    max_angle: float,
    anchor: tuple[float, float] | None = None,
) -> Image.Image:
    """Tilt, scale and rotate the device layer (RGBA) and drop it, with a shadow, on the scene.

    `anchor` (layer coordinates, default its centre) lands near the middle of the scene:
    close-ups centre the screen even when the rest of the device is cut off.
    """
    size = scene.width
    layer = _tilt(device, rng)
    w, h = max(1, round(layer.width * scale)), max(1, round(layer.height * scale))
    layer = layer.resize((w, h), Image.BICUBIC)
    angle = rng.uniform(-max_angle, max_angle)
    layer = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
    ax, ay = anchor if anchor is not None else (device.width / 2, device.height / 2)
    vx, vy = ax * scale - w / 2, ay * scale - h / 2
    theta = math.radians(angle)  # PIL turns counter-clockwise on screen (y points down)
    rx, ry = vx * math.cos(theta) + vy * math.sin(theta), -vx * math.sin(theta) + vy * math.cos(theta)
    jitter = size // 12 if anchor is None else size // 30
    x = round(size / 2 - (layer.width / 2 + rx)) + rng.randint(-jitter, jitter)
    y = round(size / 2 - (layer.height / 2 + ry)) + rng.randint(-jitter, jitter)
    _shadow(scene, layer, (x, y), rng)
    scene.paste(layer, (x, y), layer)
    return scene


def _tilt(device: Image.Image, rng: random.Random) -> Image.Image:
    """A mild perspective: the camera is rarely square on to the device."""
    w, h = device.size
    k = rng.uniform(0.0, 0.08)
    dx = k * w
    # The source quadrilateral (UL, LL, LR, UR) is wider than the layer on the far edge,
    # so that edge comes out shorter; the margin outside the layer is transparent.
    if rng.random() < 0.5:
        quad = (-dx, 0, 0, h, w, h, w + dx, 0)  # top edge further away
    else:
        quad = (0, 0, -dx, h, w + dx, h, w, 0)  # bottom edge further away
    return device.transform((w, h), Image.QUAD, quad, resample=Image.BICUBIC)


def _shadow(scene: Image.Image, layer: Image.Image, at: tuple[int, int], rng: random.Random) -> None:
    alpha = layer.getchannel("A").point(lambda a: int(a * rng.uniform(0.35, 0.6)))
    blurred = alpha.filter(ImageFilter.GaussianBlur(rng.uniform(4, 10)))
    offset = (at[0] + rng.randint(3, 12), at[1] + rng.randint(3, 12))
    dark = Image.new("RGB", blurred.size, (10, 10, 10))
    scene.paste(dark, offset, blurred)


def light(image: Image.Image, rng: random.Random) -> Image.Image:
    """Uneven light, colour temperature, exposure, blur and sensor noise."""
    image = _light_gradient(image, rng)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.15))
    image = _tint(image, rng)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return _add_noise(image, rng, sigma=rng.uniform(1.5, 6.0))


def _light_gradient(image: Image.Image, rng: random.Random) -> Image.Image:
    size = image.width
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    strength = rng.uniform(0.1, 0.45)
    gain = (1.0 + strength * ramp)[..., None]
    array = np.clip(np.asarray(image, dtype=np.float32) * gain, 0, 255)
    return Image.fromarray(array.astype(np.uint8))


def _tint(image: Image.Image, rng: random.Random) -> Image.Image:
    warm = rng.uniform(-0.08, 0.08)  # >0 warm indoor bulbs, <0 cool daylight
    overlay = Image.new("RGB", image.size, (int(128 + 255 * warm), 128, int(128 - 255 * warm)))
    return ImageChops.overlay(image, overlay) if abs(warm) > 0.02 else image


def _add_noise(image: Image.Image, rng: random.Random, *, sigma: float) -> Image.Image:
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, sigma, (image.height, image.width, 1))
    array = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255)
    return Image.fromarray(array.astype(np.uint8))
