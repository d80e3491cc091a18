"""CAKE: Contrastive Abductive Knowledge Extraction, model-agnostic data-free distillation.

Braun, Mundt, Kersting, "Deep Classifier Mimicry without Data Access", AISTATS 2024 (arXiv:2306.02090;
official code github.com/ml-research/CAKE: ``src/sampling.py``; its MNIST run ``conf/config.yaml``,
``conf/dataset/mnist.yaml``, ``conf/experiment/mnist-cnn.yaml``). The method needs only the teacher's
outputs and input gradients, so any differentiable classifier will do; the default reads no layer of it.
``start="batchnorm"`` starts from the pixel statistics read off the teacher's first BatchNorm layer
(:func:`start_statistics`): a named option, not model-agnostic.

A batch is ``G`` groups of ``K`` samples with distinct random target classes ``y``; with logits
``z = f(x)`` over ``C`` classes and ``TV`` the anisotropic, per-pixel-mean total variation:

    L = w_cls K mean_gk CE(z_gk, y_gk) + w_contr mean_g sum_{i<j} ||z_gi - z_gj||^2 / C + w_tv mean TV(x)

The contrastive term pulls a group's samples towards the boundaries between their classes; ``w_tv``
is scaled by ``H W / tv_reference_size^2``. The parameters are ``x`` at ``1 / downsample`` resolution,
upsampled bilinearly; the teacher sees the image rolled by up to ``jitter`` pixels. Batch ``t`` of ``T``
starts at ``clip_[0,1](init_mean + init_std N(0, 1))`` and takes ``num_steps`` projected SGD steps
``x <- clip_[0,1](x - eps_t grad_x L)`` with ``eps_t = noise 10^(-noise_decay_magnitude t / (T - 1))``
(``langevin``: ``+ sqrt(2 eps_t) N(0, 1)``): early batches hug the boundaries, late ones stay near their
start. ``stretch`` maps each finished image's ``q`` and ``1 - q`` quantiles to 0 and 1; the label saved
with it is ``softmax(f(x))``, learnt by the student with KD (:func:`modelmine.distill.train_student`).

Official: the losses' scaling, ``w_cls``, ``w_contr``, ``langevin``, soft labels. Not fields: samples are
images (kept in [0, 1], 8-bit at the end, so the labels describe the PNGs; official: unconstrained
tensors in normalised space); ``eps_t`` ends on the last batch (the official ``t / T`` stops a step
short); no entropy or soft-nearest-neighbour variants. The priors below exist because a global-pooling
teacher (our ``cnn``) sums local stroke evidence, so outputs alone are met by stroke textures that do
not transfer; the official ``Cnn`` (preset ``cake_cnn``) admits one centred shape. ``student_acc`` is
the paper's quantity (real test accuracy), from a smaller budget. Results: ``benchmarks/RESULTS.md``.

| field | paper or official code | why ours differs |
|---|---|---|
| ``num_groups`` | 10 (MNIST's classes) | every class of the teacher, whatever the class count |
| ``w_tv``, ``tv_reference_size`` | 1e7, unscaled | 1e7 flattens small images; a mean TV fades as 1 / (H W) |
| ``noise`` | 0.1 at batch 500 | a step is ~ ``noise / batch_size``; 0.1 on small batches: checkerboards |
| ``noise_decay_magnitude`` | 4 | at our budget, steps below ~1e-4 leave a sample at its noise start |
| ``num_batches``, ``batch_size``, ``num_steps`` | 512 x 500, 256 steps | CPU: more samples, fewer steps |
| ``start``, ``init_mean``, ``init_std`` | N(0, 1) in the normalised input space | the official start |
| ``downsample`` | 1 | a smoothness prior against stroke textures (as in DeepInversion's ImageNet code) |
| ``jitter`` | 0 | DeepInversion's small-image prior (its CIFAR rolls): features that survive a shift |
| ``stretch`` | none | low-contrast grey samples, far from real images' statistics, do not transfer |
| ``student.preset`` | the teacher's architecture | official; a compressed student learns less from CAKE |
| ``student.lr``, ``student.epochs`` | SGD 0.1 (one-cycle), 10 epochs | the shared data-free recipe |
| ``student.batch_size``, ``student.loss``, ``student.temperature`` | 128, soft CE, T = 1 | the same recipe |
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..classifiers import predict_logits
from ..config import Runtime
from ..data import quantize
from ..distill import StudentConfig, distill_batches
from ..distributed import processes
from ..errors import UserError
from ..runs import item_seed, synthesize_merged
from ..teacher import TeacherConfig, data_num_classes, open_data_free_run, resolve_teacher


@dataclass
class CakeConfig(Runtime):
    """All CAKE defaults; see the module docstring for which come from the paper/official code."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # the shared data-free recipe (KD at T = 4) with the teacher's architecture (preset None), as in
    # the official code (the shared recipe's compressed cnn_small transfers worse from CAKE's samples)
    student: StudentConfig = field(default_factory=lambda: StudentConfig(preset=None))
    data: str = "digits"  # the private data the default teacher trains on (built-in name or folder)
    test_data: str | None = None  # ImageFolder test set; none: the test split of `data`
    num_batches: int = 48
    # samples per batch: batch_size / num_groups rows of num_groups samples; None: the multiple of
    # num_groups nearest 100 (resolved before config.yaml is written)
    batch_size: int | None = None
    num_groups: int | None = None  # K: samples per group, each a distinct target class; None: every class
    # each batch takes SGD steps until target_share of its samples are classified as their target
    # (checked on what the teacher saw at each step), at most num_steps; None: always num_steps
    num_steps: int = 30
    target_share: float | None = None
    noise: float = 0.01  # initial SGD step size eps (official name); also the Langevin scale
    noise_decay_magnitude: float = 1.5  # eps decays to noise / 10**magnitude (official: 4)
    langevin: bool = False
    w_cls: float = 1e3
    w_contr: float = 1e-3
    w_tv: float = 1e5
    # w_tv holds for images of tv_reference_size^2 pixels and is scaled by H * W / tv_reference_size^2:
    # the TV is a per-pixel mean, so its pull on one pixel shrinks as 1 / (H * W); None: unscaled
    tv_reference_size: int | None = 16
    stretch: float | None = 0.05  # per-image contrast stretch quantile (None: off); see docstring
    # samples start at init_mean + init_std * N(0, 1), clipped to [0, 1]; None: from `start`: "generic"
    # (FALLBACK_START, the official N(0, 1) in the presets' normalised space: outputs and input
    # gradients only) or "batchnorm" (read off the teacher's first BatchNorm layer, start_statistics:
    # not model-agnostic); the values used are written to metrics.json (start_mean, start_std)
    start: Literal["generic", "batchnorm"] = "generic"
    init_mean: float | None = None
    init_std: float | None = None
    # samples are optimised at 1/downsample of the teacher's resolution and upsampled bilinearly
    # (a smoothness prior against adversarial pixel noise); 1: the official full-resolution pixels
    downsample: int = 2
    jitter: int = 2  # max random roll in pixels of the image the teacher sees, per step (0: off, official)
    seed: int = 0


# The start without a BatchNorm layer to read: N(0, 1) in the presets' normalised input space, whose
# Normalize layer maps pixels p to (p - 0.5) / 0.5 (the official start in the teacher's input space).
FALLBACK_START = (0.5, 0.5)


# --------------------------------------------------------------------------------------------
# The equations
# --------------------------------------------------------------------------------------------
def start_statistics(
    teacher: nn.Module, image_shape: tuple[int, int, int], device: torch.device
) -> tuple[float, float] | None:
    """Pixel mean and std of the teacher's training images, read off its first BatchNorm layer, or None.

    The running statistics of the first BatchNorm layer the teacher runs describe its input on the
    training data. The layers before it are taken to be affine in the image (a convolution, a
    normalisation), so that input is ``a + m b`` for constant images of value ``m`` and gains a
    variance ``v * u`` from i.i.d. pixel noise of variance ``v`` (plus the spread over positions that
    zero padding gives a constant image); ``a``, ``b`` and ``u`` are measured
    per channel with probe images, and ``m`` and ``v`` are the least-squares fits over the channels
    (pixels treated as independent). Only forward passes; ``None`` for a teacher without BatchNorm.
    """
    layers = [m for m in teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return None
    first: list[tuple[nn.Module, torch.Tensor]] = []  # (layer, its input) of the first BatchNorm run

    def grab(module: nn.Module, args: tuple) -> None:
        if not first:
            first.append((module, args[0].detach().cpu()))

    hooks = [m.register_forward_pre_hook(grab) for m in layers]
    noise = torch.randn(16, *image_shape, generator=torch.Generator().manual_seed(0))
    probes = torch.cat([torch.zeros(1, *image_shape), torch.ones(1, *image_shape), 0.5 + noise])
    z = []
    try:
        with torch.no_grad():
            for x in probes.split(1):  # one image at a time: each one's first BatchNorm input
                first.clear()
                teacher(x.to(device))
                z.append(first[0][1])
    finally:
        for h in hooks:
            h.remove()
    bn = first[0][0]
    if bn.running_mean is None or bn.running_var is None:
        return None
    z = torch.cat(z).transpose(0, 1).flatten(2)  # (C, 2 + 16, L) the first BatchNorm layer's inputs
    a_l, b_l = z[:, 0], z[:, 1] - z[:, 0]  # (C, L) per position (borders differ under padding)
    a, b = a_l.mean(1), b_l.mean(1)  # (C,)
    rm, rv = bn.running_mean.float().cpu(), bn.running_var.float().cpu()
    mean = float((b * (rm - a)).sum() / (b * b).sum().clamp_min(1e-12))
    # running_var = v * u + the spread over positions of a constant image's response
    u = (z[:, 2:] - (a_l + 0.5 * b_l)[:, None]).pow(2).flatten(1).mean(1)  # (C,) from unit pixel noise
    spread = (a_l + mean * b_l).var(1, unbiased=False)  # (C,)
    var = float((u * (rv - spread)).sum() / (u * u).sum().clamp_min(1e-12))
    return min(max(mean, 0.0), 1.0), min(math.sqrt(max(var, 0.0)), 0.5)


def step_size_schedule(batch_index: int, num_batches: int, noise: float, magnitude: float = 4.0) -> float:
    """Step size of batch ``t``: log-linear from ``noise`` (t = 0) to ``noise / 10**magnitude`` (last)."""
    if num_batches <= 1:
        return noise
    frac = batch_index / (num_batches - 1)
    return 10 ** (math.log10(noise) - magnitude * frac)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image: mean |vertical diff| + mean |horizontal diff|.

    ``x`` ``(B, C, H, W)`` -> ``(B,)``; averaged over channels, zero for a constant image.
    """
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(-2, -1))
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(-2, -1))
    return (dv + dh).mean(dim=1)


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Squared logit distance inside each group: ``mean_g sum_{i<j} ||z_gi - z_gj||^2 / C``.

    ``logits`` ``(G, K, C)`` -> scalar; zero when all logits of every group are identical.
    """
    d = (logits[:, :, None, :] - logits[:, None, :, :]).pow(2).mean(-1)  # (G, K, K)
    return 0.5 * d.sum(dim=(1, 2)).mean()


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``K * mean CE``: logits ``(G, K, C)``, targets ``(G, K)``."""
    k = logits.shape[1]
    return k * F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def cake_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    x: torch.Tensor,
    w_cls: float,
    w_contr: float,
    w_tv: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The CAKE objective. logits ``(G, K, C)``, targets ``(G, K)``, samples ``x`` ``(G*K, C, H, W)``.

    Returns the weighted total and its unweighted parts (for logging).
    """
    parts = {
        "cls": classification_loss(logits, targets),
        "contr": contrastive_loss(logits),
        "tv": total_variation(x).mean(),
    }
    total = w_cls * parts["cls"] + w_contr * parts["contr"] + w_tv * parts["tv"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def stretch_contrast(x: torch.Tensor, q: float) -> torch.Tensor:
    """Per-image contrast stretch: the ``q`` and ``1 - q`` quantiles of each image go to 0 and 1.

    ``x`` ``(B, C, H, W)`` -> ``(B, C, H, W)`` in [0, 1]; differentiable; a flat image becomes 0.
    """
    flat = x.flatten(1)
    lo = torch.quantile(flat, q, dim=1).view(-1, 1, 1, 1)
    hi = torch.quantile(flat, 1 - q, dim=1).view(-1, 1, 1, 1)
    return ((x - lo) / (hi - lo).clamp_min(1e-3)).clamp(0, 1)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``x`` ``(B, C, h, w)`` to ``(B, C, *size)``; the identity at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def sample_group_targets(
    num_rows: int, num_groups: int, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """``(G, K)`` targets: every row holds ``K`` distinct classes drawn at random."""
    if num_groups > num_classes:
        raise UserError(f"num_groups ({num_groups}) cannot exceed the number of classes ({num_classes})")
    scores = torch.rand(num_rows, num_classes, generator=generator)
    return scores.argsort(dim=1)[:, :num_groups]  # a random permutation per row, batched


def synthesize_batch(
    teacher: nn.Module,
    image_shape: tuple[int, int, int],
    num_classes: int,
    cfg: CakeConfig,
    eps: float,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """One CAKE batch: ``{"images": (B, C, H, W) in [0, 1] on the 8-bit grid, "targets": (B,),
    "steps": ()}`` (the SGD steps taken).

    All ``G`` groups of the batch are optimised together as one tensor.
    """
    k = cfg.num_groups
    if cfg.batch_size % k != 0:
        raise UserError(f"batch_size ({cfg.batch_size}) must be a multiple of num_groups ({k})")
    if cfg.target_share is not None and not 0 < cfg.target_share <= 1:
        raise UserError(f"target_share must be in (0, 1] or null, got {cfg.target_share}")
    if cfg.downsample < 1 or cfg.jitter < 0:
        raise UserError(f"downsample must be >= 1 and jitter >= 0, got {cfg.downsample} and {cfg.jitter}")
    rows = cfg.batch_size // k
    targets = sample_group_targets(rows, k, num_classes, generator)  # (G, K)
    c, h, w = image_shape
    low = (c, max(1, h // cfg.downsample), max(1, w // cfg.downsample))
    mean, std = (
        FALLBACK_START if cfg.init_mean is None or cfg.init_std is None else (cfg.init_mean, cfg.init_std)
    )
    x0 = mean + std * torch.randn(cfg.batch_size, *low, generator=generator)
    x = x0.clamp(0, 1).to(device).requires_grad_(True)  # (B, C, h, w): the optimised parameters
    t = targets.to(device)
    w_tv = cfg.w_tv if cfg.tv_reference_size is None else cfg.w_tv * h * w / cfg.tv_reference_size**2
    opt = torch.optim.SGD([x], lr=eps)
    taken = 0  # SGD steps
    # with target_share, one more forward after the last step checks it; without, the loop ends there
    for _ in range(cfg.num_steps + (cfg.target_share is not None)):
        image = upsample(x, (h, w))  # (B, C, H, W)
        seen = image
        if cfg.jitter > 0:
            dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=generator).tolist()
            seen = torch.roll(image, shifts=(dx, dy), dims=(2, 3))
        logits = teacher(seen).view(rows, k, -1)
        reached = cfg.target_share is not None and (logits.argmax(-1) == t).float().mean() >= cfg.target_share
        if reached or taken == cfg.num_steps:
            break
        loss, _ = cake_loss(logits, t, image, cfg.w_cls, cfg.w_contr, w_tv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        taken += 1
        with torch.no_grad():
            if cfg.langevin:
                noise = torch.randn(x.shape, generator=generator).to(device)
                x.add_(math.sqrt(2 * eps) * noise)
            x.clamp_(0, 1)  # projected SGD: samples stay images
    images = upsample(x.detach(), (h, w))
    if cfg.stretch is not None:  # low-contrast grey samples transfer poorly (module docstring)
        images = stretch_contrast(images, cfg.stretch)
    images = quantize(images)  # exactly what the PNGs (and the soft labels) describe
    return {"images": images.cpu(), "targets": targets.flatten(), "steps": torch.tensor(taken)}


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
def resolve_sizes(cfg: CakeConfig) -> CakeConfig:
    """``cfg`` with the sizes that depend on the teacher filled in: its input size, ``num_groups`` =
    its number of classes (a group holds one sample of each), ``batch_size`` the multiple of it
    nearest 100 samples."""

    cfg = resolve_teacher(cfg, cfg.data, cfg.test_data)
    k = cfg.num_groups if cfg.num_groups is not None else data_num_classes(cfg.teacher, cfg.data)
    batch = cfg.batch_size if cfg.batch_size is not None else max(k, round(100 / k) * k)
    return dataclasses.replace(cfg, num_groups=k, batch_size=batch)


def resolve_start(
    cfg: CakeConfig, teacher: nn.Module, image_shape: tuple[int, int, int], device: torch.device
) -> CakeConfig:
    """``cfg`` with ``init_mean`` / ``init_std`` filled in where None: :data:`FALLBACK_START` for
    ``start="generic"``; for ``"batchnorm"`` the teacher's first BatchNorm layer's
    (:func:`start_statistics`), else :data:`FALLBACK_START`."""
    if cfg.init_mean is not None and cfg.init_std is not None:
        return cfg
    if cfg.start not in ("generic", "batchnorm"):
        raise UserError(f"start must be generic or batchnorm, got {cfg.start!r}")
    read = start_statistics(teacher, image_shape, device) if cfg.start == "batchnorm" else None
    mean, std = read or FALLBACK_START
    return dataclasses.replace(
        cfg,
        init_mean=mean if cfg.init_mean is None else cfg.init_mean,
        init_std=std if cfg.init_std is None else cfg.init_std,
    )


def run(cfg: CakeConfig, out: Path) -> dict:
    """`modelmine cake`: teacher -> CAKE samples -> student -> accuracy on the real test set.

    Metrics: ``teacher_acc``, ``student_acc``, ``num_samples``, ``synthesis_seconds``,
    ``synthesis_target_acc`` (teacher argmax == target), ``student_agreement`` (with the teacher),
    ``start_mean`` / ``start_std`` (the start the samples were drawn from, :func:`resolve_start`),
    ``synthesis_steps`` (mean SGD steps per batch).
    """
    torch.manual_seed(cfg.seed)
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg = resolve_sizes(cfg)
    cfg, run_, device, teacher, info, test = open_data_free_run(cfg, out)
    shape = (info.in_channels, info.image_size, info.image_size)
    cfg = resolve_start(cfg, teacher, shape, device)
    if procs.is_main:  # every process derives the same start; one writes it
        run_.log_metrics(start_mean=cfg.init_mean, start_std=cfg.init_std)

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        eps = step_size_schedule(i, cfg.num_batches, cfg.noise, cfg.noise_decay_magnitude)
        g = torch.Generator().manual_seed(item_seed(cfg.seed, i))
        b = synthesize_batch(teacher, shape, info.num_classes, cfg, eps, g, device)
        b["probs"] = F.softmax(predict_logits(teacher, b["images"], device=device), dim=1)
        b["eps"] = torch.tensor(eps)
        return b

    batches = synthesize_merged(run_, cfg.num_batches, make_batch, procs)
    if batches is None:  # another process of a launch: its batches are written, the main one distills
        return {}
    steps = [b.get("steps", torch.tensor(cfg.num_steps)) for b in batches]  # older runs: the fixed count
    run_.log_metrics(synthesis_steps=float(torch.stack(steps).float().mean()))
    return distill_batches(
        run_, teacher, info, batches, test, cfg.student,
        grid=lambda images, targets: grid_rows(batches, cfg.num_groups), nrow=cfg.num_groups,
        seed=cfg.seed, device=device,
    )  # fmt: skip


def grid_rows(batches: list[dict[str, torch.Tensor]], k: int, rows: int = 8) -> torch.Tensor:
    """One group per row from evenly spaced batches (most to least optimised), sorted by target."""
    pick = sorted({round(j * (len(batches) - 1) / max(rows - 1, 1)) for j in range(rows)})
    out = []
    for i in pick:
        b = batches[i]
        order = b["targets"][:k].argsort()
        out.append(b["images"][:k][order])
    return torch.cat(out)
