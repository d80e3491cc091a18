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
| ``w_tv`` | 1e7 | 1e5 | 1e7 flattens 16x16 samples |
| optimiser | plain SGD on the inputs, log-linear step decay over the batches | the same | official |
| ``noise`` (first step size) | 0.1 | 0.01 | the loss is a batch mean, so a sample's step is about ``noise / batch_size`` (official 0.1 / 500, ours 0.01 / 100); at 0.1 on batches of 100 the L1 TV gradient makes pixels oscillate into a saturated checkerboard |
| ``noise_decay_magnitude`` | 4 | 1.5 | with 24 batches of 60 steps, steps below about 1e-4 leave a sample near its noise start: with 4 the later half of the batches stays noise |
| Langevin | off | off | official |
| budget | 512 batches of 500 samples, 256 steps | 24 batches of 100, 60 steps | under 10 minutes on 2 CPU cores (the same as DeepInversion's) |
| start | N(0, 1) in MNIST-normalised space | ``init_mean + init_std * N(0, 1)`` = the private digits' pixel mean / std (0.3, 0.32), clipped to [0, 1] | the official start in pixel units for these data |
| pixel range | an unconstrained tensor in normalised space | projected onto [0, 1] after each step, 8-bit at the end | samples are images (see below) |
| ``stretch`` | none | 0.05: each finished sample's 5% / 95% intensity quantiles go to 0 / 1 | see below |
| soft labels | on | on (``softmax(f(x))`` of the stretched, rounded image) | official |
| student | the teacher's architecture, SGD (momentum 0.9, lr 0.1, one-cycle), 10 epochs, batch 128, weight decay 5e-4, soft cross-entropy (T = 1) | ``cnn_small``, AdamW (lr 3e-3, one-cycle), 30 epochs, batch 64, weight decay 5e-4, 2-pixel shifts, KD at T = 4 | the data-free methods' shared recipe (:class:`modelmine.distill.StudentConfig`): a compressed student |

``stretch`` (not in the official code): without it samples are low-contrast grey images whose
statistics (BatchNorm ones in particular) are far from any real image's, and a student trained on
them agrees with the teacher on held-out *synthetic* samples but does not transfer to real digits.
The stretch is data-free (a generic image prior: images use their full intensity range) and the
labels describe the stretched images. Measured results, next to DeepInversion's and a real-data
student's: ``benchmarks/RESULTS.md`` (CAKE and DeepInversion); the short-run sweeps behind
``noise``, ``noise_decay_magnitude`` and ``stretch`` (and the options tried and not kept: a student
without BatchNorm, a dark start, stretching inside the loop) were written in this docstring up to
commit b02b09e.

Deviations from the official code:

- Pixel range: the official code optimises an unconstrained tensor in the teacher's normalised
  input space and trains on those raw tensors. Here samples are images: they start at
  ``init_mean + init_std * N(0, 1)`` clipped to [0, 1], are projected onto [0, 1] after each step
  (projected SGD), contrast-stretched (``stretch``) and rounded to 8 bits at the end, so the soft
  labels describe exactly the PNGs written to ``samples/``.
- The step-size schedule reaches ``noise / 10**magnitude`` exactly on the last batch (the official
  code stops one step short, at ``t / T`` with ``t < T``).
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
from ..teacher import TeacherConfig, open_data_free_run, resolve_teacher


@dataclass
class CakeConfig:
    """All CAKE defaults; see the module docstring for which come from the paper/official code."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # the shared data-free recipe (cnn_small, KD at T = 4); preset=None: the teacher's architecture,
    # as in the official code
    student: StudentConfig = field(default_factory=StudentConfig)
    data: str = "digits"  # the private data the default teacher trains on (built-in name or folder)
    test_data: str | None = None  # ImageFolder test set; none: the test split of `data`
    num_batches: int = 24
    # samples per batch: batch_size / num_groups rows of num_groups samples; None: the multiple of
    # num_groups nearest 100 (resolved before config.yaml is written)
    batch_size: int | None = None
    num_groups: int | None = None  # K: samples per group, each a distinct target class; None: every class
    num_steps: int = 60
    noise: float = 0.01  # initial SGD step size eps (official name); also the Langevin scale
    noise_decay_magnitude: float = 1.5  # eps decays to noise / 10**magnitude (official: 4)
    langevin: bool = False
    w_cls: float = 1e3
    w_contr: float = 1e-3
    w_tv: float = 1e5
    stretch: float | None = 0.05  # per-image contrast stretch quantile (None: off); see docstring
    init_mean: float = 0.3  # samples start at init_mean + init_std * N(0, 1), clipped to [0, 1]
    init_std: float = 0.32
    seed: int = 0
    device: str = "auto"


# --------------------------------------------------------------------------------------------
# The equations
# --------------------------------------------------------------------------------------------
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
    rows = cfg.batch_size // k
    targets = sample_group_targets(rows, k, num_classes, generator)  # (G, K)
    x0 = cfg.init_mean + cfg.init_std * torch.randn(cfg.batch_size, *image_shape, generator=generator)
    x = x0.clamp(0, 1).to(device).requires_grad_(True)  # (B, C, H, W)
    t = targets.to(device)
    opt = torch.optim.SGD([x], lr=eps)
    for _ in range(cfg.num_steps):
        logits = teacher(x).view(rows, k, -1)
        loss, _ = cake_loss(logits, t, x, cfg.w_cls, cfg.w_contr, cfg.w_tv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            if cfg.langevin:
                noise = torch.randn(x.shape, generator=generator).to(device)
                x.add_(math.sqrt(2 * eps) * noise)
            x.clamp_(0, 1)  # projected SGD: samples stay images
    images = x.detach()
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
    from ..teacher import data_num_classes

    cfg = resolve_teacher(cfg, cfg.data, cfg.test_data)
    k = cfg.num_groups if cfg.num_groups is not None else data_num_classes(cfg.teacher, cfg.data)
    batch = cfg.batch_size if cfg.batch_size is not None else max(k, round(100 / k) * k)
    return dataclasses.replace(cfg, num_groups=k, batch_size=batch)


def run(cfg: CakeConfig, out: Path) -> dict:
    """`modelmine cake`: teacher -> CAKE samples -> student -> accuracy on the real test set.

    Metrics: ``teacher_acc``, ``student_acc``, ``num_samples``, ``synthesis_seconds``,
    ``synthesis_target_acc`` (teacher argmax == target), ``student_agreement`` (with the teacher).
    """
    torch.manual_seed(cfg.seed)
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg = resolve_sizes(cfg)
    cfg, run_, device, teacher, info, test = open_data_free_run(cfg, out)
    shape = (info.in_channels, info.image_size, info.image_size)

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
