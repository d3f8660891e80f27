"""Batch augmentation on the device: random crop with padding, horizontal flip, small random affine.

Each function transforms a whole N×C×H×W batch (uint8 or float) at once, with one random draw per image taken
from an explicit `torch.Generator`, so the same generator state gives the same batch. The generator may live on
the CPU while the images are on the GPU: the few random numbers are drawn there and moved over.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lab.errors import LabError


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    draw = torch.rand(n, generator=generator, device=generator.device)
    return (low + (high - low) * draw).to(device)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each side by `padding`, then cut an H×W window at a random offset per image."""
    if padding <= 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device).to(images.device)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)  # N × H
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)  # N × W
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indexing around the channel slice puts the indexed dims first: N × H × W × C.
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = _uniform(images.shape[0], 0.0, 1.0, generator, images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    max_rotate: float = 0.0,
    max_translate: float = 0.0,
    scale: Sequence[float] = (1.0, 1.0),
) -> torch.Tensor:
    """Rotate by up to ±max_rotate degrees, shift by up to ±max_translate of the size, zoom by a factor in scale.

    Pixels that come from outside the image are zero. uint8 images are resampled in float and rounded back.
    """
    n = images.shape[0]
    device = images.device
    angle = _uniform(n, -max_rotate, max_rotate, generator, device) * (math.pi / 180)
    shift_x = _uniform(n, -max_translate, max_translate, generator, device) * 2  # grid coordinates span [-1, 1]
    shift_y = _uniform(n, -max_translate, max_translate, generator, device) * 2
    zoom = _uniform(n, scale[0], scale[1], generator, device)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # Each output pixel samples the input at theta · (x, y, 1): the inverse of the wanted transform.
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    as_float = images.float() if images.dtype == torch.uint8 else images
    grid = F.affine_grid(theta.to(as_float.dtype), list(images.shape), align_corners=False)
    out = F.grid_sample(as_float, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else out


class BatchAugment:
    """Crop → flip → affine, each step on only when configured, e.g. BatchAugment(crop_padding=4, hflip=True)."""

    def __init__(
        self,
        crop_padding: int = 0,
        hflip: bool = False,
        max_rotate: float = 0.0,
        max_translate: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
    ) -> None:
        if crop_padding < 0 or max_rotate < 0 or max_translate < 0 or not 0 < scale[0] <= scale[1]:
            raise LabError(
                "augmentation needs crop_padding, max_rotate, max_translate >= 0 and 0 < scale[0] <= scale[1]; got "
                f"{crop_padding}, {max_rotate}, {max_translate}, {list(scale)}"
            )
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.max_rotate, self.max_translate, self.scale = max_rotate, max_translate, (scale[0], scale[1])

    @property
    def uses_affine(self) -> bool:
        return self.max_rotate > 0 or self.max_translate > 0 or self.scale != (1.0, 1.0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.ndim != 4:
            raise LabError(f"augmentation expects an N×C×H×W batch, got shape {tuple(images.shape)}")
        images = random_crop(images, self.crop_padding, generator)
        if self.hflip:
            images = random_hflip(images, generator)
        if self.uses_affine:
            images = random_affine(images, generator, self.max_rotate, self.max_translate, self.scale)
        return images
