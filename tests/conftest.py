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


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    """``sd_folder(style, clip_sample=None)``: a tiny SD-format folder (:mod:`modelmine.diffusion.tiny_sd`),
    built once per style; other ``clip_sample`` entries are copies with that scheduler entry."""
    import json
    import shutil

    from modelmine.diffusion.tiny_sd import build_tiny_sd

    root = tmp_path_factory.mktemp("sd")
    built: dict = {}

    def get(style: str = "sd1", clip_sample: bool | None = None):
        key = (style, clip_sample)
        if key in built:
            return built[key]
        if (style, None) not in built:
            built[(style, None)] = build_tiny_sd(root / style, style)
        if clip_sample is not None:
            dst = root / f"{style}-clip-{clip_sample}"
            shutil.copytree(built[(style, None)], dst)
            path = dst / "scheduler" / "scheduler_config.json"
            path.write_text(json.dumps(json.loads(path.read_text()) | {"clip_sample": clip_sample}))
            built[key] = dst
        return built[key]

    return get


@pytest.fixture(scope="session")
def blip2_folder(tmp_path_factory):
    """A tiny ``Blip2ForConditionalGeneration`` folder with its processor."""
    from modelmine.diffusion.tiny_sd import build_tiny_blip2

    return build_tiny_blip2(tmp_path_factory.mktemp("blip2") / "blip2")


@pytest.fixture(scope="session")
def tiny_generator_path(tmp_path_factory):
    """A tiny embedded-format (pixel-space, 8x8) generator file."""
    from _tiny import SMALL_UNET
    from modelmine.diffusion.generator import Generator

    path = tmp_path_factory.mktemp("embedded") / "tiny_generator.safetensors"
    Generator.build_tiny(image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32).save_embedded(path)
    return path
