"""DeepInversion: data-free distillation by inverting a BatchNorm teacher (the CAKE baseline).

Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020
(arXiv:1912.08795; official code: github.com/NVlabs/DeepInversion). Unlike CAKE it needs the
teacher's BatchNorm layers: their running statistics are the prior that makes inverted images
look like the training data. A teacher without BatchNorm is refused with a one-line error.

Synthesis of a batch ``x`` ``(B, C, H, W)`` with balanced targets ``y``, Adam on the pixels:

- Eq. 2 ``R_prior = w_tv * R_TV(x) + w_l2 * ||x||_2``: ``R_TV`` is the official L2 total variation,
  the sum of the norms of the four neighbour differences (vertical, horizontal, both diagonals);
  ``||x||_2`` the per-image L2 norm, batch mean.
- Eq. 4 ``R_feature = sum_l a_l (||mu_l(x) - running_mean_l||_2 + ||sigma_l^2(x) - running_var_l||_2)``
  over every BatchNorm layer ``l`` (batch statistics of the layer's input), with ``a_1 =
  first_bn_multiplier`` for the first layer and 1 for the rest (official code); the shared block
  :mod:`modelmine.bn_statistics`, which DDIS's DAG uses too.
- ``L = CE(f(x'), y) + w_bn * R_feature + R_prior`` on a randomly jittered (and optionally flipped)
  copy ``x'`` of the batch; Adam with a cosine learning rate; pixels clipped to [0, 1] after each
  step (the official code clips to the valid image range). Soft labels ``softmax(f(x))`` are saved
  with the samples and the student is trained on them, exactly as for CAKE.

Where the defaults come from: ``first_bn_multiplier = 10``, Adam ``betas = (0.5, 0.9)``, cosine
learning rate, clipping, L2 TV and L2 priors are the official ImageNet code's settings; the
learning rate 0.1, jitter of 2 pixels and no L2 prior are its CIFAR-10 script's. Flipping is off by
default because digits are not mirror-symmetric (the official code flips natural images). The
budget (24 batches of 100, 60 steps, the student recipe) is the same as ``modelmine cake``'s so
the two are compared at equal cost; ``w_bn`` and ``w_tv`` were re-tuned for 16x16 digits
(the official CIFAR script uses 2,000 steps on batches of 256). Adaptive DeepInversion (the
competition term with the student) is not implemented.

Run folder: as ``modelmine cake`` (``synthesis/batch_*.safetensors`` resume checkpoints,
``samples/`` ImageFolder with soft labels, ``samples_grid.png``, ``student.safetensors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..bn_statistics import BNStatistics, require_batchnorm
from ..classifiers import predict_logits
from ..data import quantize
from ..distill import StudentConfig, distill_synthetic_batches
from ..distributed import processes, resolve_device
from ..report import class_grid_index
from ..runs import Run, synthesize_merged
from ..teacher import TeacherConfig, resolve_teacher, teacher_and_test_set


@dataclass
class DeepInversionConfig:
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
    seed: int = 0
    device: str = "auto"


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
) -> dict[str, torch.Tensor]:
    """One DeepInversion batch: ``{"images": (B, C, H, W) on the 8-bit grid, "targets": (B,)}``."""
    b = cfg.batch_size
    targets = (torch.arange(b) % num_classes)[torch.randperm(b, generator=generator)]
    x0 = cfg.init_mean + cfg.init_std * torch.randn(b, *image_shape, generator=generator)
    x = x0.clamp(0, 1).to(device).requires_grad_(True)  # (B, C, H, W)
    t = targets.to(device)
    opt = torch.optim.Adam([x], lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.num_steps))
    with BNStatistics(teacher, "DeepInversion") as hooks:
        for _ in range(cfg.num_steps):
            dx, dy = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=generator).tolist()
            xj = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
            if cfg.flip and torch.rand((), generator=generator) < 0.5:
                xj = torch.flip(xj, dims=(3,))
            logits = teacher(xj)
            r_bn = hooks.loss(cfg.first_bn_multiplier)
            loss = (
                F.cross_entropy(logits, t) + cfg.w_bn * r_bn + cfg.w_tv * tv_l2(xj) + cfg.w_l2 * l2_prior(xj)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    images = quantize(x.detach())  # exactly what the PNGs will hold
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
    cfg = resolve_teacher(cfg, cfg.data)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    teacher, info, test = teacher_and_test_set(
        cfg.teacher, cfg.data, cfg.test_data, run_.dir, device,
        check=lambda t: require_batchnorm(t, "DeepInversion"),  # no BatchNorm: the one-line error
    )  # fmt: skip
    shape = (info.in_channels, info.image_size, info.image_size)

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + i)
        b = synthesize_batch(teacher, shape, info.num_classes, cfg, g, device)
        b["probs"] = F.softmax(predict_logits(teacher, b["images"], device=device), dim=1)
        return b

    batches = synthesize_merged(run_, cfg.num_batches, make_batch, procs)
    if batches is None:  # another process of a launch: its batches are written, the main one distills
        return {}
    # up to 8 samples of each class, one class per column
    index, columns = class_grid_index(torch.cat([b["targets"] for b in batches]))
    return distill_synthetic_batches(
        run_, teacher, info, batches, test, cfg.student, grid=lambda images, targets: images[index],
        nrow=columns, seed=cfg.seed, device=device,
    )  # fmt: skip
