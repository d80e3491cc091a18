"""A non-digit dataset for the benchmarks: grey image patches, one class per source picture.

``write_patches(root)`` writes ``root/train/<class>/*.png`` and ``root/test/<class>/*.png``: square
patches cut at random positions and scales (side ``size * s``, ``s`` uniform in [1, 3], resized down,
antialiased) from six pictures shipped inside installed packages, so nothing is downloaded:
scikit-learn's two sample photos (``china``, ``flower``), matplotlib's portrait (``portrait``), its
two elevation maps (``terrain``, ``fault``) and its MRI slice (``mri``). The class is the picture a
patch comes from: texture and tone, not shapes. Each picture is cut into a checkerboard of blocks:
train patches come from the white blocks and test patches from the black ones, so no test pixel was
ever seen in training while both splits span the whole picture. Seeded: the same call writes the
same files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.cbook as cbook
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_sample_images

from modelmine.data import ImageSet, save_image_folder

CLASSES = ("china", "flower", "portrait", "terrain", "fault", "mri")
GRID = 4  # blocks per side of each picture's train / test checkerboard


def _unit(a: np.ndarray) -> torch.Tensor:
    a = a.astype(np.float64)
    return torch.from_numpy((a - a.min()) / max(a.max() - a.min(), 1e-12)).float()


def source_pictures() -> dict[str, torch.Tensor]:
    """Each source picture as a grey ``(H, W)`` tensor in [0, 1]."""
    photos = dict(zip(("china", "flower"), load_sample_images().images, strict=True))
    grey = {k: _unit(v.mean(2)) for k, v in photos.items()}
    grey["portrait"] = _unit(np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("L")))
    with cbook.get_sample_data("topobathy.npz") as z:  # matplotlib opens .npz files itself
        grey["terrain"] = _unit(z["topo"])
    with cbook.get_sample_data("jacksboro_fault_dem.npz") as z:
        grey["fault"] = _unit(z["elevation"])
    with cbook.get_sample_data("s1045.ima.gz") as fh:  # opened decompressed
        grey["mri"] = _unit(np.frombuffer(fh.read(), np.uint16).reshape(256, 256))
    return {k: grey[k] for k in CLASSES}


def cut_patches(picture: torch.Tensor, n: int, size: int, part: int, g: torch.Generator) -> torch.Tensor:
    """``n`` patches ``(n, 1, size, size)`` from one part of ``picture``: it is cut into a
    ``GRID x GRID`` checkerboard of blocks, part 0 the white blocks and part 1 the black ones, so the
    two parts share no pixel but both span the whole picture; each patch lies inside one block."""
    h, w = picture.shape
    bh, bw = h // GRID, w // GRID
    blocks = [(i, j) for i in range(GRID) for j in range(GRID) if (i + j) % 2 == part]
    sides = (size * (1 + 2 * torch.rand(n, generator=g))).round().long().clamp(max=min(bh, bw))
    which = torch.randint(len(blocks), (n,), generator=g).tolist()
    out = []
    for side, b in zip(sides.tolist(), which, strict=True):  # sizes differ: one crop and resize each
        i, j = blocks[b]
        top = i * bh + int(torch.randint(0, bh - side + 1, (1,), generator=g))
        left = j * bw + int(torch.randint(0, bw - side + 1, (1,), generator=g))
        crop = picture[top : top + side, left : left + side][None, None]
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True))
    return torch.cat(out).clamp(0, 1)


def write_patches(root: str | Path, size: int = 16, train_per_class: int = 500, test_per_class: int = 150,
                  seed: int = 0) -> tuple[Path, Path]:  # fmt: skip
    """Write the train and test ImageFolders under ``root`` (once); returns their paths."""
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    if (test_dir / CLASSES[-1]).is_dir():
        return train_dir, test_dir
    g = torch.Generator().manual_seed(seed)
    pictures = source_pictures()
    for folder, n, part in ((train_dir, train_per_class, 0), (test_dir, test_per_class, 1)):
        images = torch.cat([cut_patches(pictures[c], n, size, part, g) for c in CLASSES])
        labels = torch.arange(len(CLASSES)).repeat_interleave(n)
        save_image_folder(folder, ImageSet(images, labels, list(CLASSES)))
    return train_dir, test_dir
