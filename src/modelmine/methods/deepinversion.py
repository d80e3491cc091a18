"""DeepInversion: data-free distillation by inverting a BatchNorm teacher (the CAKE baseline).

Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020
(arXiv:1912.08795; official code: github.com/NVlabs/DeepInversion, ``imagenet_inversion.py`` with
``deepinversion.py``, and ``cifar10/deepinversion_cifar10.py``). The teacher's BatchNorm running
statistics are the prior that makes inverted images look like its training data, so a teacher without
BatchNorm is refused. :func:`synthesize_batch` runs Adam on the pixels of a batch ``x`` ``(B, C, H, W)``
with balanced targets ``y``; each step:

1. ``x'``: ``x`` rolled by a random shift of up to ``jitter`` pixels (and mirrored, with ``flip``).
2. Eq. 2 ``R_prior = w_tv * R_TV(x') + w_l2 * ||x'||_2``: :func:`tv_l2`, the official L2 total
   variation (summed norms of the four neighbour differences); :func:`l2_prior`, per image, batch mean.
3. Eq. 4 ``R_feature = sum_l a_l (||mu_l(x') - running_mean_l||_2 + ||sigma_l^2(x') - running_var_l||_2)``
   over the inputs of the BatchNorm layers, ``a_1 = first_bn_multiplier``, else 1 (official code):
   :func:`modelmine.bn_statistics.bn_statistics_loss`, shared with DDIS's DAG.
4. ``L = CE(f(x'), y) + w_bn * R_feature + R_prior``; an Adam step with a cosine learning rate, then
   ``x`` clipped to [0, 1]: samples are images (the ImageNet code clips to its valid range too).
5. With ``keep_best`` the batch returned is the iterate of lowest ``L``, one number for the whole batch,
   scored before its update (so the last update is never scored): the official ``best_cost`` /
   ``best_inputs``. The official scripts mean this but return about the last iterate: CIFAR's
   ``best_inputs = inputs.data`` aliases the optimised tensor, ImageNet's never lowers ``best_cost`` from 1e4.

The student learns the soft labels ``softmax(f(x))`` saved with the samples, as for CAKE, and the run
folder is CAKE's. Adaptive DeepInversion (a competition term with the student) is not implemented: this
is the plain baseline. Results: ``benchmarks/RESULTS.md`` (CAKE and DeepInversion).

| field | paper or official code | why ours differs |
|---|---|---|
| ``first_bn_multiplier`` | ImageNet 10; CIFAR none (1) | the ImageNet code's |
| ``betas`` | Adam; ImageNet (0.5, 0.9), CIFAR (0.9, 0.999) | the ImageNet code's |
| ``lr`` | ImageNet 0.2, cosine, 100 warm-up steps; CIFAR 0.1, constant | CIFAR's; too few steps to warm up |
| ``w_bn`` | ImageNet 0.05; CIFAR 100 (script), 10 (README's paper setting) | re-tuned for 16x16 digits |
| ``w_tv`` | ImageNet 1e-4; CIFAR 2.5e-5 | re-tuned for 16x16 digits |
| ``w_l2`` | ImageNet 1e-5; CIFAR 0 | the CIFAR code's |
| ``jitter`` | ImageNet 30 pixels; CIFAR 2 | the CIFAR code's (small images) |
| ``flip`` | ImageNet on; CIFAR off | digits are not mirror-symmetric |
| ``init_mean``, ``init_std`` | N(0, 1) in the normalised input space | pixel space, not normalised, clipped |
| ``keep_best`` | the batch's lowest ``L`` (intended, step 5) | the official intent |
| ``num_steps`` | ImageNet 2k + 1k (two resolutions); CIFAR 2k | fewer: the cost of ``modelmine cake`` |
| ``num_batches``, ``batch_size`` | batches of 64 (ImageNet), 256 (CIFAR) | the cost of ``modelmine cake`` |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..bn_statistics import BNStatistics, require_batchnorm
from ..classifiers import predict_logits
from ..config import Runtime
from ..data import quantize
from ..distill import StudentConfig, distill_batches
from ..distributed import processes
from ..report import class_grid_index
from ..runs import item_seed, synthesize_merged
from ..teacher import TeacherConfig, open_data_free_run


@dataclass
class DeepInversionConfig(Runtime):
    """All DeepInversion defaults; see the module docstring for their sources."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)  # the same recipe as CAKE's
    data: str = "digits"  # the private data the default teacher trains on (built-in name or folder)
    test_data: str | None = None  # ImageFolder test set; none: the test split of `data`
    num_batches: int = 24
    batch_size: int = 100
    num_steps: int = 60
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.9)
    w_bn: float = 1.0
    first_bn_multiplier: float = 10.0
    w_tv: float = 1e-3
    w_l2: float = 0.0
    jitter: int = 2  # max random roll in pixels, per step
    flip: bool = False
    init_mean: float = 0.5  # pixels start at init_mean + init_std * N(0, 1), clipped to [0, 1]
    init_std: float = 0.5
    # official: the batch's iterate with the lowest total loss is kept (False: the last iterate)
    keep_best: bool = True
    seed: int = 0


# --------------------------------------------------------------------------------------------
# The equations
# --------------------------------------------------------------------------------------------
def tv_l2(x: torch.Tensor) -> torch.Tensor:
    """Official L2 total variation: summed norms of the 4 neighbour differences. ``(B, C, H, W)`` -> scalar."""
    d1 = x[:, :, :, :-1] - x[:, :, :, 1:]
    d2 = x[:, :, :-1, :] - x[:, :, 1:, :]
    d3 = x[:, :, 1:, :-1] - x[:, :, :-1, 1:]
    d4 = x[:, :, :-1, :-1] - x[:, :, 1:, 1:]
    return sum(torch.linalg.vector_norm(d) for d in (d1, d2, d3, d4))


def l2_prior(x: torch.Tensor) -> torch.Tensor:
    """Mean per-image L2 norm. ``(B, C, H, W)`` -> scalar."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).mean()


def synthesize_batch(
    teacher: nn.Module,
    image_shape: tuple[int, int, int],
    num_classes: int,
    cfg: DeepInversionConfig,
    generator: torch.Generator,
    device: torch.device,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """One DeepInversion batch: ``{"images": (B, C, H, W) on the 8-bit grid, "targets": (B,)}``.

    With ``cfg.keep_best`` the images are the iterate whose total loss ``L`` (the whole batch's,
    on its jittered copy, computed before that iterate's update) was the lowest, else the last
    iterate. ``callback(step, L, x)`` sees every scored iterate ``x`` ``(B, C, H, W)`` (detached).
    """
    b = cfg.batch_size
    targets = (torch.arange(b) % num_classes)[torch.randperm(b, generator=generator)]
    x0 = cfg.init_mean + cfg.init_std * torch.randn(b, *image_shape, generator=generator)
    x = x0.clamp(0, 1).to(device).requires_grad_(True)  # (B, C, H, W)
    t = targets.to(device)
    opt = torch.optim.Adam([x], lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.num_steps))
    best_loss, best = math.inf, None
    with BNStatistics(teacher, "DeepInversion") as hooks:
        for step in range(cfg.num_steps):
            dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=generator).tolist()
            xj = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
            if cfg.flip and torch.rand((), generator=generator) < 0.5:
                xj = torch.flip(xj, dims=(3,))
            logits = teacher(xj)
            r_bn = hooks.loss(cfg.first_bn_multiplier)
            loss = (
                F.cross_entropy(logits, t) + cfg.w_bn * r_bn + cfg.w_tv * tv_l2(xj) + cfg.w_l2 * l2_prior(xj)
            )
            value = loss.item()
            if callback is not None:
                callback(step, value, x.detach().clone())
            if cfg.keep_best and value < best_loss:  # the official best_cost / best_inputs
                best_loss, best = value, x.detach().clone()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    final = best if best is not None else x.detach()
    images = quantize(final)  # exactly what the PNGs will hold
    return {"images": images.cpu(), "targets": targets}


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
def run(cfg: DeepInversionConfig, out: Path) -> dict:
    """`modelmine deepinversion`: teacher -> inverted samples -> student -> accuracy on real test data.

    Metrics: ``teacher_acc``, ``student_acc``, ``num_samples``, ``synthesis_seconds``,
    ``synthesis_target_acc``, ``student_agreement``, ``student_seconds``.
    """
    torch.manual_seed(cfg.seed)
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg, run_, device, teacher, info, test = open_data_free_run(
        cfg,
        out,
        check=lambda t: require_batchnorm(t, "DeepInversion"),  # no BatchNorm: the one-line error
    )
    shape = (info.in_channels, info.image_size, info.image_size)

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(item_seed(cfg.seed, i))
        b = synthesize_batch(teacher, shape, info.num_classes, cfg, g, device)
        b["probs"] = F.softmax(predict_logits(teacher, b["images"], device=device), dim=1)
        return b

    batches = synthesize_merged(run_, cfg.num_batches, make_batch, procs)
    if batches is None:  # another process of a launch: its batches are written, the main one distills
        return {}
    # up to 8 samples of each class, one class per column
    index, columns = class_grid_index(torch.cat([b["targets"] for b in batches]))
    return distill_batches(
        run_, teacher, info, batches, test, cfg.student, grid=lambda images, targets: images[index],
        nrow=columns, seed=cfg.seed, device=device,
    )  # fmt: skip
