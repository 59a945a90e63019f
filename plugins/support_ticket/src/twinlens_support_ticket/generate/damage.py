"""Surface damage laid over a drawn device: crack networks, liquid stains, scratches."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from twinlens_support_ticket.generate.screens import Box


def _clip_to(layer: Image.Image, mask: Image.Image) -> Image.Image:
    """Keep the overlay only where `mask` (L) is set."""
    alpha = ImageChops.multiply(layer.getchannel("A"), mask)
    layer.putalpha(alpha)
    return layer


def _box_mask(size: tuple[int, int], box: Box) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def cracks(device: Image.Image, screen: Box, rng: random.Random) -> None:
    """A crack network: rays from an impact point that wander and branch, plus ring arcs."""
    overlay = Image.new("RGBA", device.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    x0, y0, x1, y1 = screen
    span = max(x1 - x0, y1 - y0)
    impact = (rng.uniform(x0, x1), rng.uniform(y0, y1)) if rng.random() < 0.7 else (rng.choice([x0, x1]), rng.uniform(y0, y1))
    for ray in range(rng.randint(7, 13)):
        angle = 2 * math.pi * ray / 10 + rng.uniform(-0.4, 0.4)
        _crack_ray(draw, impact, angle, span * rng.uniform(0.5, 1.2), rng, depth=0)
    for ring in range(rng.randint(1, 3)):
        radius = span * rng.uniform(0.06, 0.22) * (ring + 1)
        start = rng.uniform(0, 360)
        box = (impact[0] - radius, impact[1] - radius, impact[0] + radius, impact[1] + radius)
        draw.arc(box, start=start, end=start + rng.uniform(60, 200), fill=(235, 238, 240, 225), width=4)
    draw.ellipse((impact[0] - 12, impact[1] - 12, impact[0] + 12, impact[1] + 12), fill=(240, 240, 240, 210))
    device.alpha_composite(_clip_to(overlay, _box_mask(device.size, screen)))


def _crack_ray(draw: ImageDraw.ImageDraw, start, angle: float, length: float, rng: random.Random, depth: int) -> None:
    x, y = start
    points = [(x, y)]
    step = length / 8
    for _ in range(8):
        angle += rng.uniform(-0.35, 0.35)
        x, y = x + math.cos(angle) * step, y + math.sin(angle) * step
        points.append((x, y))
        if depth < 2 and rng.random() < 0.18:
            _crack_ray(draw, (x, y), angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1), length * 0.4, rng, depth + 1)
    # Thick enough to survive the model's ~128 px view of a 384 px photo.
    width = 6 if depth == 0 else 4
    draw.line(points, fill=(245, 248, 250, 240), width=width, joint="curve")


def stains(device: Image.Image, rng: random.Random) -> None:
    """Liquid marks: irregular translucent blotches with darker tide-mark rims, and droplets."""
    overlay = Image.new("RGBA", device.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    bbox = device.getchannel("A").getbbox() or (0, 0, *device.size)
    x0, y0, x1, y1 = bbox
    # Coffee, tea, dirty water: brownish marks read as liquid on any finish.
    tone = rng.choice([(150, 105, 45), (120, 85, 40), (170, 130, 70), (100, 90, 60)])
    for _ in range(rng.randint(2, 4)):
        centre = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        radius = min(x1 - x0, y1 - y0) * rng.uniform(0.18, 0.34)
        outline = _blob(centre, radius, rng)
        draw.polygon(outline, fill=(*tone, rng.randint(130, 180)))
        draw.line([*outline, outline[0]], fill=(*[max(0, c - 60) for c in tone], 230), width=6)
    for _ in range(rng.randint(4, 10)):
        cx, cy, r = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(6, 14)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*tone, 180), outline=(250, 250, 250, 200), width=3)
        draw.ellipse((cx - r * 0.5, cy - r * 0.6, cx - r * 0.1, cy - r * 0.2), fill=(255, 255, 255, 220))  # glint
    overlay = overlay.filter(ImageFilter.GaussianBlur(0.8))
    device.alpha_composite(_clip_to(overlay, device.getchannel("A")))


def _blob(centre, radius: float, rng: random.Random) -> list[tuple[float, float]]:
    phases = [rng.uniform(0, 2 * math.pi) for _ in range(3)]
    points = []
    for i in range(36):
        angle = 2 * math.pi * i / 36
        wobble = 1 + sum(0.18 / (k + 1) * math.sin((k + 2) * angle + phases[k]) for k in range(3))
        points.append((centre[0] + math.cos(angle) * radius * wobble, centre[1] + math.sin(angle) * radius * wobble * 0.8))
    return points


def scratches(device: Image.Image, body: Box, rng: random.Random) -> None:
    """Wear on the case: paint rubbed off the edges and corners, dents, and scratches in a
    few directions (shorter and finer than a crack network, and never from one point)."""
    overlay = Image.new("RGBA", device.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    x0, y0, x1, y1 = body
    span = min(x1 - x0, y1 - y0)
    # Worn patches show the lighter metal or plastic under the paint on any finish;
    # scratches show bright on dark finishes and dark on light ones.
    body_colour = device.getpixel((int((x0 + x1) / 2), int(y0 + (y1 - y0) * 0.7)))
    light_finish = sum(body_colour[:3]) > 450
    ink = (40, 40, 40) if light_finish else (255, 255, 255)
    bare = (150, 150, 150) if light_finish else (205, 205, 200)
    for _ in range(rng.randint(3, 5)):
        _worn_patch(draw, body, span, bare, rng)
    directions = [rng.uniform(0, math.pi) for _ in range(rng.randint(1, 2))]
    for _ in range(rng.randint(14, 24)):
        angle = rng.choice(directions) + rng.uniform(-0.15, 0.15)
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        half = span * rng.uniform(0.05, 0.16)
        dx, dy = math.cos(angle) * half, math.sin(angle) * half
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=(*ink, rng.randint(140, 200)), width=rng.choice([2, 3]))
    for _ in range(rng.randint(1, 3)):
        cx, cy, r = rng.uniform(x0, x1), rng.uniform(y0, y1), span * rng.uniform(0.04, 0.07)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(0, 0, 0, 90))
        draw.arc((cx - r, cy - r + 4, cx + r, cy + r + 4), start=20, end=160, fill=(255, 255, 255, 170), width=4)
    device.alpha_composite(_clip_to(overlay, device.getchannel("A")))


def _worn_patch(draw: ImageDraw.ImageDraw, body: Box, span: float, colour, rng: random.Random) -> None:
    """Paint rubbed off along an edge or at a corner: a ragged pale streak."""
    x0, y0, x1, y1 = body
    along_x = rng.random() < 0.5
    if along_x:
        y = rng.choice([y0, y1]) + rng.uniform(-4, 4)
        start = rng.uniform(x0, x1 - span * 0.3)
        points = [(start + t * span * 0.35, y + rng.uniform(-1, 1) * span * 0.05) for t in (0, 0.3, 0.6, 1.0)]
    else:
        x = rng.choice([x0, x1]) + rng.uniform(-4, 4)
        start = rng.uniform(y0, y1 - span * 0.3)
        points = [(x + rng.uniform(-1, 1) * span * 0.05, start + t * span * 0.35) for t in (0, 0.3, 0.6, 1.0)]
    draw.line(points, fill=(*colour, 220), width=int(span * rng.uniform(0.06, 0.1)), joint="curve")
