"""Shared tiny fixtures. Everything is seeded, CPU only, no network."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
# Tiny models run fastest on one thread (no OpenMP barriers); it also keeps timings stable in CI.
torch.set_num_threads(1)


@pytest.fixture
def tiny_folder(tmp_path):
    """A 3-class ImageFolder of 8x8 greyscale PNGs with captions."""
    from modelmine.data import ImageSet, save_image_folder

    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 1, 8, 8, generator=g)
    labels = torch.arange(12) % 3
    data = ImageSet(images, labels, ["cat", "dog", "owl"], [f"caption {i}" for i in range(12)])
    root = tmp_path / "folder"
    save_image_folder(root, data)
    return root, data
