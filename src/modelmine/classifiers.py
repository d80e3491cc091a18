"""Classifiers: small presets, one training loop, evaluation, safetensors save/load.

Every classifier takes images in [0, 1] ``(B, C, H, W)`` and normalises internally, so synthesis
methods (CAKE, DeepInversion, DDIS) all work in the same pixel range. Presets:

- ``cnn``: 5 conv layers with BatchNorm (32-32-64-64-128), the default teacher.
- ``cnn_small``: the same shape at half width, a compressed student.
- ``resnet``: a ResNet-8 style network (BasicBlocks, BatchNorm, widths 16/32/64).
- ``mlp``: two hidden layers, no BatchNorm, for model-agnostic methods (CAKE).
- ``torchvision:<name>`` / ``timm:<name>``: users' real models, when those packages are installed.

Checkpoints are safetensors with the preset, class names and input shape in their metadata, so a
classifier file is self-describing: ``load_classifier(path)`` rebuilds it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import UserError
from .runs import atomic_save_tensors, load_tensors


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


PRESETS = ("cnn", "cnn_small", "resnet", "mlp")


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
            import torchvision

            net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        else:
            import timm

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


def save_classifier(path: str | Path, model: nn.Module, info: ClassifierInfo) -> None:
    meta = {
        "preset": info.preset,
        "num_classes": str(info.num_classes),
        "in_channels": str(info.in_channels),
        "image_size": str(info.image_size),
        "class_names": json.dumps(info.class_names),
    }
    atomic_save_tensors(path, dict(model.state_dict()), metadata=meta)


def load_classifier(path: str | Path, preset: str | None = None) -> tuple[nn.Module, ClassifierInfo]:
    """Rebuild a classifier from a safetensors file written by :func:`save_classifier`.

    The file's own metadata names its architecture. Files without modelmine metadata (e.g. a
    torchvision state dict saved as safetensors) need ``preset`` (``torchvision:resnet18``); their
    classes are numbered.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise UserError(f"classifier file not found: {p}")
    if p.suffix != ".safetensors":
        raise UserError(f"classifier {p} must be a .safetensors file (pickle checkpoints are not loaded)")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise UserError(f"cannot read safetensors file {p}: {e}") from None
    state = load_tensors(p)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserError(f"classifier {p} has NaN/inf weights (first in '{bad[0]}')")
    if "preset" in meta:
        info = ClassifierInfo(
            preset=meta["preset"],
            num_classes=int(meta["num_classes"]),
            in_channels=int(meta["in_channels"]),
            image_size=int(meta["image_size"]),
            class_names=json.loads(meta["class_names"]),
        )
    else:
        if preset is None or preset in PRESETS:
            raise UserError(
                f"{p} has no modelmine metadata; name its torchvision/timm architecture (--set teacher.preset=torchvision:resnet18)"
            )
        heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
        k = heads[-1].shape[0] if heads else 10
        info = ClassifierInfo(preset, k, 3, 224, [str(i) for i in range(k)])
    model = build_classifier(info.preset, info.num_classes, info.in_channels, info.image_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(
            f"weights in {p} do not fit preset '{info.preset}': {str(e).splitlines()[0]}"
        ) from None
    return model.eval(), info


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
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "train",
    targets_of: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """The one training loop: AdamW, cosine schedule, batched random shifts.

    ``images`` ``(N, C, H, W)`` in [0, 1]; ``targets`` ``(N,)`` labels or ``(N, K)`` soft labels,
    passed with the logits to ``loss_fn(logits, targets)``. ``augment`` is the max shift in pixels.
    ``targets_of(x) -> (B, ...)``, when given, makes each batch's targets from the augmented batch
    ``x`` itself (e.g. a teacher queried on exactly what the student sees) instead of ``targets``.
    """
    if len(images) == 0:
        raise UserError("cannot train a classifier on an empty dataset")
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
            x = images[idx]
            if augment > 0:
                x = random_shift(x, augment, g)
            x = x.to(device)
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
    info: ClassifierInfo, image_shape: tuple[int, int, int], num_classes: int, what: str
) -> None:
    """One-line errors for data that does not fit a classifier (class count, channels, size)."""
    if info.num_classes != num_classes:
        raise UserError(f"{what} has {num_classes} classes but the classifier outputs {info.num_classes}")
    c, h, w = image_shape
    if c != info.in_channels:
        raise UserError(f"{what} has {c}-channel images but the classifier expects {info.in_channels}")
    if not info.preset.startswith(("torchvision:", "timm:")) and (h, w) != (info.image_size, info.image_size):
        raise UserError(
            f"{what} images are {h}x{w} but the classifier expects {info.image_size}x{info.image_size}"
        )
