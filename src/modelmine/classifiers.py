"""Classifiers: small presets, one training loop, evaluation, safetensors save/load.

Every classifier takes images in [0, 1] ``(B, C, H, W)`` and normalises internally, so synthesis
methods (CAKE, DeepInversion, DDIS) all work in the same pixel range. Presets:

- ``cnn``: 5 conv layers with BatchNorm (32-32-64-64-128), the default teacher.
- ``cnn_small``: the same shape at half width, a compressed student.
- ``resnet``: a ResNet-8 style network (BasicBlocks, BatchNorm, widths 16/32/64).
- ``mlp``: two hidden layers, no BatchNorm, for model-agnostic methods (CAKE).
- ``cake_cnn``: the official CAKE code's MNIST ``Cnn`` (``src/models/cnn.py``: convolutions 32-64-64-64
  of sizes 3-4-3-3 without padding, ReLU, three 2x2 max-pools, one linear layer), no BatchNorm; the
  last max-pool is adaptive: the official 2x2 pool on 28-pixel MNIST (a 2x2 map there), the whole map on
  other sizes (the official one would drop rows at 32 pixels). Images of 21 pixels or more.
- ``torchvision:<name>`` / ``timm:<name>``: users' real models, when those packages are installed.

Checkpoints are safetensors with the preset, class names and input shape in their metadata, so a
classifier file is self-describing: ``load_classifier(path)`` rebuilds it.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import MAX_IMAGE_SIZE, check_class_names, fit_to
from .errors import UserError
from .runs import FLOAT_DTYPES, atomic_save_tensors, load_tensors, non_finite, read_header


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Classifier(nn.Module):
    """``normalize -> body -> (B, D) features -> head -> (B, K) logits``."""

    def __init__(
        self, body: nn.Module, feature_dim: int, num_classes: int, mean: list[float], std: list[float]
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, D)`` of images ``(B, C, H, W)`` in [0, 1]."""
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


PRESETS = ("cnn", "cnn_small", "resnet", "mlp", "cake_cnn")
MAX_CLASSES = 100_000
MIN_IMAGE_SIZE = 4  # the CNN presets pool twice
CAKE_CNN_MIN_SIZE = 21  # cake_cnn's unpadded convolutions leave a 1x1 map at 21 pixels


def build_classifier(
    preset: str = "cnn",
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 16,
    seed: int | None = None,
) -> nn.Module:
    """A fresh classifier for ``(B, in_channels, image_size, image_size)`` images in [0, 1].

    With ``seed`` its initial weights come from that seed alone (the global RNG is left as it
    was), so a model trained in a worker process, after other work, or on another process of a
    launch starts from the same weights.
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_classifier(preset, num_classes, in_channels, image_size)
    if not 2 <= num_classes <= MAX_CLASSES:
        raise UserError(f"a classifier needs 2 to {MAX_CLASSES:,} classes, got {num_classes}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise UserError(
            f"classifier image size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got {image_size}"
        )
    mean, std = [0.5] * in_channels, [0.5] * in_channels
    if preset in ("cnn", "cnn_small"):
        w = 32 if preset == "cnn" else 16
        body = nn.Sequential(
            *_conv_bn(in_channels, w), *_conv_bn(w, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        return Classifier(body, 4 * w, num_classes, mean, std)
    if preset == "resnet":
        body = nn.Sequential(
            *_conv_bn(in_channels, 16),
            BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        return Classifier(body, 64, num_classes, mean, std)
    if preset == "cake_cnn":
        if image_size < CAKE_CNN_MIN_SIZE:
            raise UserError(
                f"preset cake_cnn needs images of {CAKE_CNN_MIN_SIZE} pixels or more, got {image_size}"
            )
        body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )  # fmt: skip
        return Classifier(body, 64, num_classes, mean, std)
    if preset == "mlp":
        d = in_channels * image_size * image_size
        body = nn.Sequential(nn.Flatten(), nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        return Classifier(body, 256, num_classes, mean, std)
    if preset.startswith(("torchvision:", "timm:")):
        return _external_classifier(preset, num_classes)
    raise UserError(
        f"unknown classifier preset '{preset}' (use one of {', '.join(PRESETS)}, torchvision:NAME, timm:NAME)"
    )


def _external_classifier(name: str, num_classes: int) -> nn.Module:
    """torchvision/timm architectures (weights come from the user's safetensors, never downloaded)."""
    lib, arch = name.split(":", 1)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    try:
        if lib == "torchvision":
            import torchvision  # optional: not installable beside the CPU torch wheel

            net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        else:
            import timm  # optional dependency, only for timm: presets

            net = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    except ImportError:
        raise UserError(f"classifier '{name}' needs the '{lib}' package: pip install {lib}") from None
    except (ValueError, RuntimeError) as e:
        raise UserError(f"cannot build classifier '{name}': {e}") from None
    return nn.Sequential(Normalize(mean, std), net)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Features ``(B, D)`` entering the last Linear layer of any classifier."""
    if isinstance(model, Classifier):
        return model.features(x)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("classifier has no Linear layer to take penultimate features from")
    store: list[torch.Tensor] = []
    h = linears[-1].register_forward_hook(lambda m, i, o: store.append(i[0]))
    try:
        model(x)
    finally:
        h.remove()
    return store[0].flatten(1)


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------
@dataclass
class ClassifierInfo:
    preset: str
    num_classes: int
    in_channels: int
    image_size: int
    class_names: list[str]


class FitInput(nn.Module):
    """:func:`modelmine.data.fit_to` as a module: images ``(B, C, H, W)`` of any size resized and
    channel-matched to what a classifier takes (differentiable, so DAG and CAT can use it)."""

    def __init__(self, size: int, channels: int):
        super().__init__()
        self.size, self.channels = size, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fit_to(x, self.size, self.channels)


def taking_any_size(model: nn.Module, info: ClassifierInfo) -> nn.Module:
    """``model`` (eval mode) behind a :class:`FitInput` to its own ``info.image_size`` and channels:
    a student trained at the generator's resolution reads test images of the teacher's, a teacher
    reads generated images. The parts are ``.fit_input`` and ``.classifier`` (``model``)."""
    return nn.Sequential(
        OrderedDict(fit_input=FitInput(info.image_size, info.in_channels), classifier=model)
    ).eval()


def probe_logits(model: nn.Module, info: ClassifierInfo) -> torch.Tensor:
    """The model's logits ``(2, K)`` on a fixed seeded input of the size and channels ``info`` states.

    Saved with the weights, it ties the metadata to them where the weights alone cannot: a
    convolutional net with global pooling takes any image size, and a file claiming the wrong one
    would load and silently score near chance."""
    x = torch.rand(
        2, info.in_channels, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0)
    )
    was_training = model.training
    with torch.inference_mode():
        logits = model.eval()(x.to(next(model.parameters()).device)).float().cpu()
    model.train(was_training)
    return logits


def save_classifier(path: str | Path, model: nn.Module, info: ClassifierInfo) -> None:
    meta = {
        "preset": info.preset,
        "num_classes": str(info.num_classes),
        "in_channels": str(info.in_channels),
        "image_size": str(info.image_size),
        "class_names": json.dumps(info.class_names),
        "probe": json.dumps([round(v, 5) for v in probe_logits(model, info).flatten().tolist()]),
    }
    atomic_save_tensors(path, dict(model.state_dict()), metadata=meta)


def check_classifier_info(info: ClassifierInfo, where: str) -> ClassifierInfo:
    """``info`` if it describes a classifier modelmine can build, else a one-line UserError: a known
    preset, 2 .. MAX_CLASSES classes with as many distinct folder-safe names, 1 or 3 input channels
    (3 for torchvision/timm) and an image size in ``MIN_IMAGE_SIZE .. MAX_IMAGE_SIZE``."""
    external = info.preset.startswith(("torchvision:", "timm:"))
    if not (info.preset in PRESETS or (external and info.preset.split(":", 1)[1].strip())):
        raise UserError(
            f"{where}: unknown classifier preset {info.preset[:60]!r} "
            f"(use one of {', '.join(PRESETS)}, torchvision:NAME, timm:NAME)"
        )
    if not 2 <= info.num_classes <= MAX_CLASSES:
        raise UserError(f"{where}: {info.num_classes} classes; a classifier has 2 to {MAX_CLASSES:,} classes")
    allowed = (3,) if external else (1, 3)
    if info.in_channels not in allowed:
        raise UserError(
            f"{where}: {info.in_channels} input channels; preset {info.preset} takes "
            + " or ".join(map(str, allowed))
        )
    if not MIN_IMAGE_SIZE <= info.image_size <= MAX_IMAGE_SIZE:
        raise UserError(
            f"{where}: image size {info.image_size}; it must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels"
        )
    check_class_names(info.class_names, where)
    if len(info.class_names) != info.num_classes:
        raise UserError(f"{where}: {len(info.class_names)} class names for {info.num_classes} classes")
    return info


def _info_from_metadata(meta: dict[str, str], where: str) -> ClassifierInfo:
    def field_(key: str) -> str:
        if key not in meta:
            raise UserError(f"{where}: metadata has a preset but no '{key}'")
        return meta[key]

    def integer(key: str) -> int:
        raw = field_(key)
        try:
            return int(raw)
        except ValueError:
            raise UserError(f"{where}: metadata '{key}' is not an integer: {raw[:40]!r}") from None

    try:
        names = json.loads(field_("class_names"))
    except (json.JSONDecodeError, RecursionError):
        raise UserError(f"{where}: metadata 'class_names' is not a JSON list of names") from None
    return ClassifierInfo(
        field_("preset"), integer("num_classes"), integer("in_channels"), integer("image_size"), names
    )


def _expected_tensors(info: ClassifierInfo) -> dict[str, torch.Tensor] | None:
    """The state dict ``info`` implies, built on the meta device (no memory, no weights), or None
    for an external architecture that cannot be built there."""
    try:
        with torch.device("meta"):
            return build_classifier(
                info.preset, info.num_classes, info.in_channels, info.image_size
            ).state_dict()
    except UserError:
        raise
    except Exception:  # some torchvision/timm constructors compute on tensors; check after loading
        return None


def _check_tensors_fit(header, info: ClassifierInfo, where: str) -> None:
    """Every tensor the file holds is one the described classifier has, with its shape, and vice versa."""
    expected = _expected_tensors(info)
    if expected is None:
        return
    what = (
        f"preset {info.preset} with {info.num_classes} classes and "
        f"{info.in_channels}-channel {info.image_size}x{info.image_size} input"
    )
    for k, v in expected.items():
        if k not in header.shapes:
            raise UserError(
                f"{where}: no tensor '{k}', which {what} needs; its metadata does not describe it"
            )
        if header.shapes[k] != tuple(v.shape):
            raise UserError(
                f"{where}: tensor '{k}' is {list(header.shapes[k])} but {what} needs {list(v.shape)}; "
                "its metadata does not describe its weights"
            )
        if v.is_floating_point() and header.dtypes[k] not in FLOAT_DTYPES:
            raise UserError(f"{where}: tensor '{k}' is {header.dtypes[k]}, not floating point")
    extra = sorted(set(header.shapes) - set(expected))
    if extra:
        raise UserError(f"{where}: tensor '{extra[0]}' is not part of {what} ({len(extra)} unexpected)")


def read_classifier_info(path: str | Path, preset: str | None = None) -> ClassifierInfo:
    """What a classifier file describes, checked against its tensors' shapes (read from the header
    with ``safe_open``; nothing is loaded or built). One-line UserError for anything that does not fit."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"classifier file not found: {p}")
    if p.suffix != ".safetensors":
        raise UserError(f"classifier {p} must be a .safetensors file (pickle checkpoints are not loaded)")
    where = f"classifier {p}"
    header = read_header(p)
    if "preset" in header.metadata:
        info = _info_from_metadata(header.metadata, where)
    else:
        if preset is None or preset in PRESETS:
            raise UserError(
                f"{p} has no modelmine metadata; name its torchvision/timm architecture (--set teacher.preset=torchvision:resnet18)"
            )
        heads = [shape for k, shape in header.shapes.items() if k.endswith("weight") and len(shape) == 2]
        k = heads[-1][0] if heads else 10
        info = ClassifierInfo(preset, k, 3, 224, [str(i) for i in range(k)])
    check_classifier_info(info, where)
    _check_tensors_fit(header, info, where)
    return info


def load_classifier(path: str | Path, preset: str | None = None) -> tuple[nn.Module, ClassifierInfo]:
    """Rebuild a classifier from a safetensors file written by :func:`save_classifier`.

    The file's own metadata names its architecture; it is checked against the tensors' shapes
    (:func:`read_classifier_info`) before anything is loaded or built, and NaN/inf weights are
    refused. Files without modelmine metadata (e.g. a torchvision state dict saved as safetensors)
    need ``preset`` (``torchvision:resnet18``); their classes are numbered.
    """
    p = Path(path)
    info = read_classifier_info(p, preset)
    state = load_tensors(p)
    bad = non_finite(state)
    if bad is not None:
        raise UserError(f"classifier {p} has NaN/inf weights (first in '{bad}')")
    model = build_classifier(info.preset, info.num_classes, info.in_channels, info.image_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(
            f"weights in {p} do not fit preset '{info.preset}': {str(e).splitlines()[0]}"
        ) from None
    _check_probe(p, model, info)
    return model.eval(), info


def _check_probe(p: Path, model: nn.Module, info: ClassifierInfo) -> None:
    """Refuse a file whose stored :func:`probe_logits` the loaded model does not reproduce at the
    stated size (metadata that does not belong to these weights); files without a probe pass."""
    raw = read_header(p).metadata.get("probe")
    if raw is None:
        return
    try:
        stored = torch.tensor(json.loads(raw), dtype=torch.float32)
    except (ValueError, TypeError):
        raise UserError(f"classifier {p}: its 'probe' metadata is not a list of numbers") from None
    got = probe_logits(model, info).flatten()
    if stored.shape != got.shape or not torch.allclose(stored, got, rtol=1e-3, atol=1e-3):
        raise UserError(
            f"classifier {p}: its metadata (image size {info.image_size}, {info.in_channels} channels) does "
            "not match its weights (they answer a fixed probe differently than when saved); use the original file"
        )


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------
def random_shift(x: torch.Tensor, max_shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched random translation by up to ``max_shift`` pixels (bilinear, zero padding)."""
    b, _, h, w = x.shape
    t = (torch.rand(b, 2, generator=generator) * 2 - 1) * max_shift
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = t[:, 0] * 2 / w
    theta[:, 1, 2] = t[:, 1] * 2 / h
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def faint_noise(x: torch.Tensor, amplitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Half of the batch ``(B, C, H, W)`` gets additive uniform pixel noise of a random amplitude in
    ``[0, amplitude]`` (clamped to [0, 1]): a classifier trained on clean, exactly black backgrounds
    otherwise reads the faint residue a generator leaves as evidence for one class."""
    b = x.shape[0]
    level = torch.rand(b, 1, 1, 1, generator=generator) * amplitude
    level = level * (torch.rand(b, 1, 1, 1, generator=generator) < 0.5)  # the other half stays clean
    return (x + level.to(x) * torch.rand(x.shape, generator=generator).to(x)).clamp(0, 1)


def check_training(
    *, epochs: int, lr: float, batch_size: int, weight_decay: float, augment: float, noise: float = 0.0
) -> None:
    """One-line errors for training settings that cannot train anything (or train on nonsense)."""
    if epochs < 1 or batch_size < 1:
        raise UserError(f"training needs epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"learning rate must be a positive number, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0 and math.isfinite(augment) and augment >= 0):
        raise UserError(f"weight_decay and augment must be >= 0, got {weight_decay} and {augment}")
    if not (math.isfinite(noise) and 0 <= noise <= 1):
        raise UserError(f"noise must be an amplitude in [0, 1], got {noise}")


def augment_batch(x: torch.Tensor, augment: float, noise: float, g: torch.Generator) -> torch.Tensor:
    """A training batch ``(B, C, H, W)`` shifted by up to ``augment`` pixels and given faint noise of
    amplitude up to ``noise`` (each skipped at 0)."""
    if augment > 0:
        x = random_shift(x, augment, g)
    if noise > 0:
        x = faint_noise(x, noise, g)
    return x


def fit(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int = 30,
    lr: float = 2e-3,
    batch_size: int = 64,
    weight_decay: float = 5e-4,
    augment: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "train",
    targets_of: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """The one training loop: AdamW, one-cycle learning rate (15% warm-up, then cosine annealing),
    batched random shifts.

    ``images`` ``(N, C, H, W)`` in [0, 1]; ``targets`` ``(N,)`` labels or ``(N, K)`` soft labels,
    passed with the logits to ``loss_fn(logits, targets)``. ``augment`` is the max shift in pixels;
    ``noise`` the max amplitude of :func:`faint_noise` (0: none).
    ``targets_of(x) -> (B, ...)``, when given, makes each batch's targets from the augmented batch
    ``x`` itself (e.g. a teacher queried on exactly what the student sees) instead of ``targets``.
    """
    if len(images) == 0:
        raise UserError("cannot train a classifier on an empty dataset")
    check_training(
        epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, augment=augment, noise=noise
    )
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(len(images) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(len(images), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            if len(idx) < 2 and len(images) >= 2:
                continue  # BatchNorm cannot train on a batch of one
            x = augment_batch(images[idx], augment, noise, g).to(device)
            if targets_of is None:
                y = targets[idx].to(device)
            else:
                with torch.no_grad():
                    y = targets_of(x)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kw) -> nn.Module:
    """Cross-entropy training on hard labels ``(N,)``; keyword arguments as :func:`fit`."""
    return fit(model, images, labels, F.cross_entropy, **kw)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 512, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits ``(N, K)`` for images ``(N, C, H, W)``, in eval mode, batched."""
    model.eval().to(device)
    out = [
        model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kw) -> float:
    """Top-1 accuracy of ``model`` on images ``(N, C, H, W)`` with labels ``(N,)``."""
    if len(images) == 0:
        raise UserError("cannot evaluate on an empty dataset")
    return (predict_logits(model, images, **kw).argmax(1) == labels).float().mean().item()


def check_compatible(
    info: ClassifierInfo, image_shape: tuple[int, int, int], num_classes: int, what: str, size_hint: str = ""
) -> None:
    """One-line errors for data that does not fit a classifier (class count, channels, size);
    ``size_hint`` ends the size error (what to pass instead)."""
    if info.num_classes != num_classes:
        raise UserError(f"{what} has {num_classes} classes but the classifier outputs {info.num_classes}")
    c, h, w = image_shape
    if c != info.in_channels:
        raise UserError(f"{what} has {c}-channel images but the classifier expects {info.in_channels}")
    if not info.preset.startswith(("torchvision:", "timm:")) and (h, w) != (info.image_size, info.image_size):
        raise UserError(
            f"{what} images are {h}x{w} but the classifier expects {info.image_size}x{info.image_size}{size_hint}"
        )
