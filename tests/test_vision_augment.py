"""Batch augmentation: reproducible from a generator, and each transform does what it says."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lab.errors import LabError
from vision.augment import BatchAugment, random_affine, random_crop, random_hflip


def batch(dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    images = torch.randint(1, 256, (16, 3, 12, 10), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return images.to(dtype)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_same_generator_state_gives_the_same_batch(dtype: torch.dtype) -> None:
    augment = BatchAugment(crop_padding=2, hflip=True, max_rotate=10, max_translate=0.1, scale=(0.9, 1.1))
    images = batch(dtype)
    first, second = augment(images, seeded(0)), augment(images, seeded(0))
    assert first.dtype == dtype and first.shape == images.shape
    assert torch.equal(first, second)
    assert not torch.equal(first, augment(images, seeded(1)))


def test_random_crop_cuts_a_window_of_the_padded_image() -> None:
    images = batch()
    padding = 2
    out = random_crop(images, padding, seeded(0))
    padded = F.pad(images, (padding,) * 4)
    offsets = range(2 * padding + 1)
    for n in range(len(images)):  # every image is one of the shifted windows of its padded self
        assert any(torch.equal(out[n], padded[n, :, dy : dy + 12, dx : dx + 10]) for dy in offsets for dx in offsets)
    assert not torch.equal(out, images)  # all 16 images at the centre offset would mean no randomness


def test_random_hflip_mirrors_some_images() -> None:
    images = batch()
    out = random_hflip(images, seeded(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    assert torch.equal(random_hflip(images, seeded(0), p=1.0), images.flip(-1))


def test_identity_affine_keeps_the_image() -> None:
    images = batch()
    assert torch.equal(random_affine(images, seeded(0)), images)


def test_affine_translation_moves_content() -> None:
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, 4, 4] = 1.0
    moved = random_affine(images, seeded(3), max_translate=0.25)
    assert moved.sum() > 0 and not torch.allclose(moved, images)


def test_cpu_generator_works_for_images_on_any_device() -> None:
    images = batch()
    out = BatchAugment(crop_padding=1, hflip=True)(images, seeded(5))
    assert out.device == images.device and torch.equal(out, BatchAugment(crop_padding=1, hflip=True)(images, seeded(5)))


def test_bad_settings_are_lab_errors() -> None:
    with pytest.raises(LabError):
        BatchAugment(crop_padding=-1)
    with pytest.raises(LabError):
        BatchAugment(scale=(1.2, 0.8))
    with pytest.raises(LabError, match="N×C×H×W"):
        BatchAugment(hflip=True)(torch.zeros(3, 8, 8), seeded(0))
