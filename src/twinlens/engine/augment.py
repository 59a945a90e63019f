"""Train-time image augmentation on whole batches of already resized pixels.

Images are resized once before training (see `data.Preprocessor`), so augmentation works
on the batch tensor instead of on PIL images: one random affine warp per sample (small
rotation, zoom and shift) and a per-sample brightness, contrast and colour-balance change.
An image encoder trained from scratch on a few thousand photos otherwise learns where
things sit in the frame and how the lighting looked, not what the damage looks like.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from twinlens.contract.spec import AugmentSpec


def augment_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, spec: AugmentSpec,
                   generator: torch.Generator) -> torch.Tensor:
    """Augmented copy of normalised `pixels` (N, C, H, W), normalised the same way."""
    if pixels.shape[0] == 0:
        return pixels
    mean, std = mean.to(pixels.device), std.to(pixels.device)
    images = pixels * std + mean  # back to 0..1, where brightness and contrast mean something
    images = _warp(images, spec, generator)
    images = _colour(images, spec, generator)
    return (images.clamp(0.0, 1.0) - mean) / std


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _warp(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    count = images.shape[0]
    angle = _uniform(count, -spec.max_rotation, spec.max_rotation, generator) * math.pi / 180
    # Zooming in by `scale` means sampling a smaller window of the input.
    scale = 1.0 / _uniform(count, spec.min_zoom, spec.max_zoom, generator)
    shift = _uniform(2 * count, -spec.max_shift, spec.max_shift, generator).view(count, 2) * 2
    flip = torch.where(torch.rand(count, generator=generator) < spec.flip_probability, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
    ], dim=1).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Border padding repeats the edge (usually background) instead of inventing black bars.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    count, channels = images.shape[:2]
    brightness = _uniform(count, 1 - spec.brightness, 1 + spec.brightness, generator).view(count, 1, 1, 1)
    contrast = _uniform(count, 1 - spec.contrast, 1 + spec.contrast, generator).view(count, 1, 1, 1)
    tint = _uniform(count * channels, 1 - spec.colour, 1 + spec.colour, generator).view(count, channels, 1, 1)
    device = images.device
    images = images * brightness.to(device) * tint.to(device)
    average = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - average) * contrast.to(device) + average
