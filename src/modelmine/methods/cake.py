"""CAKE: Contrastive Abductive Knowledge Extraction, model-agnostic data-free distillation.

Braun, Mundt, Kersting, "Deep Classifier Mimicry without Data Access", AISTATS 2024
(arXiv:2306.02090; official code: github.com/ml-research/CAKE). Only the teacher's forward pass and
its gradient with respect to the inputs are used: no BatchNorm statistics, no layer access, no
architecture assumptions, so it works on any differentiable classifier (an MLP included).

Synthesis (one *batch* = ``G`` rows of ``K`` samples; the ``K`` samples of a row have distinct,
randomly drawn target classes ``y``; every row is one contrastive group):

- Eq. cls: ``L_cls = K * mean_{g,k} CE(f(x_gk), y_gk)`` pushes each sample to its class.
- Eq. contr: ``L_contr = mean_g sum_{i<j} ||f(x_gi) - f(x_gj)||^2 / C`` pulls the logits of a
  group's samples together, i.e. towards the decision boundaries between their classes.
- Eq. tv: ``L_tv = mean_b TV(x_b)`` with the anisotropic, per-pixel-mean total variation.
- ``L = w_cls L_cls + w_contr L_contr + w_tv L_tv``, minimised by plain SGD on the inputs for
  ``num_steps`` steps. The step size ``eps`` decays log-linearly over the batches from ``noise`` to
  ``noise / 10**noise_decay_magnitude``, so early batches are optimised hard (prototypical,
  boundary-hugging samples) and late ones stay close to their noise start: a spread of samples
  from the boundaries outwards. Optional Langevin dynamics add ``sqrt(2 eps) N(0, 1)`` after each
  step. The saved label is the teacher's soft label ``softmax(f(x))``; the student is trained on
  the samples with the KD loss (:func:`modelmine.distill.train_student`).

Defaults (official = ``conf/config.yaml``, ``conf/dataset/mnist.yaml``, ``conf/experiment/mnist-cnn.yaml``
of the official code, its MNIST run):

| setting | official (MNIST) | ours | reason |
|---|---|---|---|
| losses and their scaling | CE scaled by ``K``; ``0.5 K^2 * mse(z_i, z_j)`` over ordered pairs; TV | the same (a sum over pairs above) | official |
| ``K = num_groups`` | 10 | every class (0 = ``C``) | the same for 10 classes; any class count |
| ``w_cls``, ``w_contr`` | 1e3, 1e-3 | 1e3, 1e-3 | official |
| ``w_tv`` | 1e7 | 1e5 at 16x16, scaled by ``H W / 16^2`` (``tv_reference_size``) | 1e7 flattens 16x16 samples; the TV is a per-pixel mean, so its pull on each pixel shrinks as ``1 / (H W)``: the scaling keeps it on 28x28 images (unscaled: ``tv_reference_size=null``) |
| optimiser | plain SGD on the inputs, log-linear step decay over the batches | the same | official |
| ``noise`` (first step size) | 0.1 | 0.01 | the loss is a batch mean, so a sample's step is about ``noise / batch_size`` (official 0.1 / 500, ours 0.01 / 100); at 0.1 on batches of 100 the L1 TV gradient makes pixels oscillate into a saturated checkerboard |
| ``noise_decay_magnitude`` | 4 | 1.5 | at this budget (measured at 24 x 60 on digits and with 3 on mnist5k), steps below about 1e-4 leave a sample near its noise start: with 4 the later half of the batches stays noise |
| Langevin | off | off | official |
| budget | 512 batches of 500 samples, 256 steps | 48 batches of 100, 30 steps | the same number of teacher passes as DeepInversion's 24 x 100 x 60 (under 10 minutes on 2 CPU cores), spent on twice the samples: on the 28x28 mnist5k the student gains more from more, less optimised samples than from longer optimisation (24 x 60 was the default up to commit f6b4c67) |
| start | N(0, 1) in MNIST-normalised space, i.e. MNIST's pixel mean + std * N(0, 1) | ``init_mean + init_std * N(0, 1)`` clipped to [0, 1], the mean and std read off the teacher's first BatchNorm layer (:func:`start_statistics`); without one, 0.5 + 0.5 N(0, 1) (N(0, 1) in the presets' normalised space) | the official start (the training data's pixel statistics) without assuming a dataset; up to commit f6b4c67 the digits' fixed 0.3 / 0.32 |
| pixel range | an unconstrained tensor in normalised space | projected onto [0, 1] after each step, 8-bit at the end | samples are images (see below) |
| ``downsample`` | 1 (the pixels are the parameters) | 2: the parameters are a half-resolution image, upsampled bilinearly to the teacher's size | a generic smoothness prior (DeepInversion's ImageNet code also starts at half resolution): at full resolution a BatchNorm CNN teacher with global pooling is satisfied by pixel-level stroke textures that do not transfer (see below) |
| ``jitter`` | 0 | 2: the teacher sees the image rolled by up to 2 pixels each step (TV is taken on the unrolled image) | DeepInversion's generic prior for small images (its CIFAR code's 2 pixels): features that survive a shift, not one pixel pattern |
| ``stretch`` | none | 0.05: each finished sample's 5% / 95% intensity quantiles go to 0 / 1 | see below |
| soft labels | on | on (``softmax(f(x))`` of the stretched, rounded image) | official |
| student | the teacher's architecture, SGD (momentum 0.9, lr 0.1, one-cycle), 10 epochs, batch 128, weight decay 5e-4, soft cross-entropy (T = 1) | the teacher's architecture (``student.preset`` None), AdamW (lr 3e-3, one-cycle), 30 epochs, batch 64, weight decay 5e-4, 2-pixel shifts, KD at T = 4 | the official architecture: a student built like the teacher transfers from CAKE's samples to real images much better than the compressed ``cnn_small`` (the default up to commit f6b4c67, ``--set student.preset=cnn_small``); the rest is the data-free methods' shared recipe (:class:`modelmine.distill.StudentConfig`) |

``stretch`` (not in the official code): without it samples are low-contrast grey images whose
statistics (BatchNorm ones in particular) are far from any real image's, and a student trained on
them agrees with the teacher on held-out *synthetic* samples but does not transfer to real digits.
The stretch is data-free (a generic image prior: images use their full intensity range) and the
labels describe the stretched images. Measured results, next to DeepInversion's and a real-data
student's: ``benchmarks/RESULTS.md`` (CAKE and DeepInversion); the short-run sweeps behind
``noise``, ``noise_decay_magnitude`` and ``stretch`` (and the options tried and not kept: a student
without BatchNorm, a dark start, stretching inside the loop) were written in this docstring up to
commit b02b09e.

The teacher's architecture decides how well CAKE transfers. The official MNIST ``Cnn`` (preset
``cake_cnn``: unpadded convolutions down to a 1x1 map, no BatchNorm) is satisfied only by one
centred, digit-like shape. Our default ``cnn`` teacher ends in global average pooling, so its
class evidence is a sum of local stroke fragments, and CAKE, which sees only the teacher's outputs,
fills the whole image with a texture of them. A student trained on such textures classifies real
MNIST digits poorly. DeepInversion has the teacher's BatchNorm statistics to rule those textures
out. What helps CAKE here without assuming a dataset: the start read off the teacher's first
BatchNorm layer (dark, sparse MNIST-like pixels), ``downsample``, ``jitter``, the TV weight scaled
with the pixel count, and more samples optimised for fewer steps; together they do not close
the gap on mnist5k by themselves; a student of the teacher's own architecture (the official
choice) does most of the rest. The old defaults are ``--set downsample=1 --set jitter=0 --set
num_batches=24 --set num_steps=60 --set tv_reference_size=null --set init_mean=0.3 --set
init_std=0.32 --set student.preset=cnn_small``.
Measured: ``benchmarks/RESULTS.md`` and the matrix row ``cake (cake_cnn)``
(``benchmarks/matrix.py``), which runs the official MNIST setting beside ours.

Deviations from the official code:

- Pixel range: the official code optimises an unconstrained tensor in the teacher's normalised
  input space and trains on those raw tensors. Here samples are images: they start at
  ``init_mean + init_std * N(0, 1)`` clipped to [0, 1] (the pixel statistics the teacher's first
  BatchNorm layer implies, when it has one), are projected onto [0, 1] after each step
  (projected SGD), contrast-stretched (``stretch``) and rounded to 8 bits at the end, so the soft
  labels describe exactly the PNGs written to ``samples/``.
- The step-size schedule reaches ``noise / 10**magnitude`` exactly on the last batch (the official
  code stops one step short, at ``t / T`` with ``t < T``).
- ``downsample`` (2) and ``jitter`` (2), both off in the official code, and the TV weight scaled
  with the image's pixel count (see the table).
- The entropy and soft-nearest-neighbour variants of the official code are not implemented.
- A group may only use ``K <= C`` distinct classes; batches must be a multiple of ``K``.

Run folder: ``teacher.safetensors`` (the default teacher, trained once), ``synthesis/batch_*.safetensors``
(one atomic file per finished batch: the resume checkpoint), ``samples/`` (an ImageFolder of the
synthetic images, labelled by the teacher's argmax, with ``soft_labels.safetensors``),
``samples_grid.png``, ``student.safetensors``, ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..classifiers import predict_logits
from ..data import quantize
from ..distill import StudentConfig, distill_synthetic_batches
from ..distributed import processes
from ..errors import UserError
from ..runs import synthesize_merged
from ..teacher import TeacherConfig, data_num_classes, open_data_free_run, resolve_teacher


@dataclass
class CakeConfig:
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
    num_steps: int = 30
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
    # samples start at init_mean + init_std * N(0, 1), clipped to [0, 1]; None: read off the teacher's
    # first BatchNorm layer (start_statistics), else FALLBACK_START (the official N(0, 1) in the presets'
    # normalised space); the values used are written to metrics.json (start_mean, start_std)
    init_mean: float | None = None
    init_std: float | None = None
    # samples are optimised at 1/downsample of the teacher's resolution and upsampled bilinearly
    # (a smoothness prior against adversarial pixel noise); 1: the official full-resolution pixels
    downsample: int = 2
    jitter: int = 2  # max random roll in pixels of the image the teacher sees, per step (0: off, official)
    seed: int = 0
    device: str = "auto"


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
    """One CAKE batch: ``{"images": (B, C, H, W) in [0, 1] on the 8-bit grid, "targets": (B,)}``.

    All ``G`` groups of the batch are optimised together as one tensor.
    """
    k = cfg.num_groups
    if cfg.batch_size % k != 0:
        raise UserError(f"batch_size ({cfg.batch_size}) must be a multiple of num_groups ({k})")
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
    for _ in range(cfg.num_steps):
        image = upsample(x, (h, w))  # (B, C, H, W)
        seen = image
        if cfg.jitter > 0:
            dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=generator).tolist()
            seen = torch.roll(image, shifts=(dx, dy), dims=(2, 3))
        logits = teacher(seen).view(rows, k, -1)
        loss, _ = cake_loss(logits, t, image, cfg.w_cls, cfg.w_contr, w_tv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if cfg.langevin:
                noise = torch.randn(x.shape, generator=generator).to(device)
                x.add_(math.sqrt(2 * eps) * noise)
            x.clamp_(0, 1)  # projected SGD: samples stay images
    images = upsample(x.detach(), (h, w))
    if cfg.stretch is not None:  # low-contrast grey samples transfer poorly (module docstring)
        images = stretch_contrast(images, cfg.stretch)
    images = quantize(images)  # exactly what the PNGs (and the soft labels) describe
    return {"images": images.cpu(), "targets": targets.flatten()}


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
    """``cfg`` with ``init_mean`` / ``init_std`` filled in where None: the teacher's first BatchNorm
    layer's (:func:`start_statistics`), else :data:`FALLBACK_START`."""
    if cfg.init_mean is not None and cfg.init_std is not None:
        return cfg
    mean, std = start_statistics(teacher, image_shape, device) or FALLBACK_START
    return dataclasses.replace(
        cfg,
        init_mean=mean if cfg.init_mean is None else cfg.init_mean,
        init_std=std if cfg.init_std is None else cfg.init_std,
    )


def run(cfg: CakeConfig, out: Path) -> dict:
    """`modelmine cake`: teacher -> CAKE samples -> student -> accuracy on the real test set.

    Metrics: ``teacher_acc``, ``student_acc``, ``num_samples``, ``synthesis_seconds``,
    ``synthesis_target_acc`` (teacher argmax == target), ``student_agreement`` (with the teacher),
    ``start_mean`` / ``start_std`` (the start the samples were drawn from, :func:`resolve_start`).
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
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + i)
        b = synthesize_batch(teacher, shape, info.num_classes, cfg, eps, g, device)
        b["probs"] = F.softmax(predict_logits(teacher, b["images"], device=device), dim=1)
        b["eps"] = torch.tensor(eps)
        return b

    batches = synthesize_merged(run_, cfg.num_batches, make_batch, procs)
    if batches is None:  # another process of a launch: its batches are written, the main one distills
        return {}
    return distill_synthetic_batches(
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
