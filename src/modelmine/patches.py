"""The colour built-in dataset ``patches``: square patches of six real pictures, one class per picture.

The pictures ship inside packages modelmine already installs, so nothing is downloaded at run time:

- ``china`` and ``flower``: scikit-learn's two sample photographs (``load_sample_images``);
- ``portrait``: matplotlib's photograph of Grace Hopper (``grace_hopper.jpg``);
- ``terrain`` and ``fault``: matplotlib's two real elevation maps (``topobathy.npz``,
  ``jacksboro_fault_dem.npz``) shown the way matplotlib shows them, through its ``terrain`` and
  ``gist_earth`` colour maps;
- ``mri``: matplotlib's MRI slice (``s1045.ima.gz``), grey, as three equal channels.

A class is told by colour, tone and texture rather than by shape: data unlike digits. Each picture
(upsampled first, bilinearly, where its shorter side is under :data:`MIN_SIDE`) is cut into a
``GRID x GRID`` grid of blocks, and block ``(i, j)`` belongs to split ``(i + j) % 3`` (train,
heldout, test): the three splits share no pixel while each spans the whole picture, so the members
and the non-members of a membership audit come from one distribution. A patch is a square of side
``size * s`` (``s`` uniform in [1, 3]) inside one block, resized to ``size`` with a box filter over
4 x 4 bilinear samples per output pixel (antialiased). Split sizes per class: :data:`SPLITS`.
The split is fixed (its own seed, never a run's): every method and audit agrees on the members.

Shapes: :func:`load_patches` returns images ``(N, 3, size, size)`` in [0, 1], labels ``(N,)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import matplotlib
import matplotlib.cbook as cbook
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_sample_images

CLASSES = ("china", "flower", "portrait", "terrain", "fault", "mri")
SPLITS = {"train": 200, "heldout": 60, "test": 60}  # patches per class
GRID = 6  # blocks per side of each picture
MIN_SIDE = 288  # pictures are upsampled to at least this shorter side (blocks of 48 px at GRID 6)
SPLIT_SEED = 20_240_611  # the fixed seed of the patch positions (not a run's seed)


def _unit(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return (a - a.min()) / max(a.max() - a.min(), 1e-12)


def _mapped(values: np.ndarray, cmap: str) -> torch.Tensor:
    """A scalar field ``(H, W)`` as colours ``(3, H, W)`` through a matplotlib colour map."""
    rgb = matplotlib.colormaps[cmap](_unit(values))[..., :3]
    return torch.from_numpy(rgb).permute(2, 0, 1).float()


@lru_cache(maxsize=1)
def source_pictures() -> dict[str, torch.Tensor]:
    """Each source picture as ``(3, H, W)`` in [0, 1], in :data:`CLASSES` order."""
    out = {}
    for name, a in zip(("china", "flower"), load_sample_images().images, strict=True):
        out[name] = torch.from_numpy(np.array(a)).permute(2, 0, 1).float() / 255
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        out["portrait"] = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
    with cbook.get_sample_data("topobathy.npz") as z:
        out["terrain"] = _mapped(z["topo"], "terrain")
    with cbook.get_sample_data("jacksboro_fault_dem.npz") as z:
        out["fault"] = _mapped(z["elevation"], "gist_earth")
    with cbook.get_sample_data("s1045.ima.gz") as fh:
        mri = _unit(np.frombuffer(fh.read(), np.uint16).reshape(256, 256).astype(np.float64))
        out["mri"] = torch.from_numpy(mri).float().expand(3, -1, -1).contiguous()
    return {k: _at_least(out[k], MIN_SIDE) for k in CLASSES}


def _at_least(picture: torch.Tensor, side: int) -> torch.Tensor:
    h, w = picture.shape[-2:]
    if min(h, w) >= side:
        return picture
    f = side / min(h, w)
    size = (math.ceil(h * f), math.ceil(w * f))
    return F.interpolate(picture[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)


def cut_patches(picture: torch.Tensor, n: int, size: int, part: int, g: torch.Generator) -> torch.Tensor:
    """``n`` patches ``(n, 3, size, size)`` of ``picture`` ``(3, H, W)`` from the blocks of split
    ``part`` (module docstring), all in one batched ``grid_sample``."""
    _, h, w = picture.shape
    bh, bw = h // GRID, w // GRID
    blocks = torch.tensor([(i, j) for i in range(GRID) for j in range(GRID) if (i + j) % 3 == part])
    side = (size * (1 + 2 * torch.rand(n, generator=g))).clamp(max=min(bh, bw))
    ij = blocks[torch.randint(len(blocks), (n,), generator=g)]
    top = ij[:, 0] * bh + torch.rand(n, generator=g) * (bh - side)
    left = ij[:, 1] * bw + torch.rand(n, generator=g) * (bw - side)
    # affine map from the output square [-1, 1]^2 to the patch, in the picture's normalised coords
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side / w, side / h
    theta[:, 0, 2] = (left + side / 2) / w * 2 - 1
    theta[:, 1, 2] = (top + side / 2) / h * 2 - 1
    grid = F.affine_grid(theta, (n, 3, 4 * size, 4 * size), align_corners=False)
    out = F.grid_sample(picture.expand(n, -1, -1, -1), grid, mode="bilinear", align_corners=False)
    return F.avg_pool2d(out, 4).clamp(0, 1)


@lru_cache(maxsize=4)
def _all_patches(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every patch at ``size``: images ``(N, 3, size, size)``, labels ``(N,)``, split index ``(N,)``."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    pictures = source_pictures()
    images, labels, parts = [], [], []
    for part, n in enumerate(SPLITS.values()):
        for k, name in enumerate(CLASSES):
            images.append(cut_patches(pictures[name], n, size, part, g))
            labels.append(torch.full((n,), k))
            parts.append(torch.full((n,), part))
    return torch.cat(images), torch.cat(labels), torch.cat(parts)


def load_patches(split: str, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``train`` / ``heldout`` / ``test`` / ``all``: images ``(N, 3, size, size)``, labels
    ``(N,)`` and each image's index among all patches ``(N,)`` (its file name)."""
    x, y, part = _all_patches(size)
    idx = torch.arange(len(y))
    if split != "all":
        idx = idx[part == list(SPLITS).index(split)]
    return x[idx].clone(), y[idx].clone(), idx
