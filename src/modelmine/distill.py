"""Knowledge distillation: the KD loss and student training on any image set.

``kd_loss`` is Hinton et al. (2015): KL(p_T || q_T) between the teacher's and the student's
softened distributions at temperature T, multiplied by T^2 so gradient magnitudes do not shrink as
T grows (the usual convention; at T=1 it is plain cross-entropy to soft labels, up to a constant).
Teachers' soft labels are stored as probabilities (what CAKE and TCKR save next to their images);
softening probabilities p at temperature T is ``softmax(log p / T)``, the same as softening logits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .classifiers import (
    ClassifierInfo,
    build_classifier,
    fit,
    load_classifier,
    predict_logits,
    save_classifier,
    taking_any_size,
)
from .data import ImageSet, fit_to, save_image_folder
from .errors import UserError
from .report import save_grid

if TYPE_CHECKING:
    from .data import ImageSet
    from .runs import Run


def soften(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities ``(B, K)`` re-tempered: ``softmax(log p / T)``."""
    return F.softmax(torch.log(probs.clamp_min(1e-12)) / temperature, dim=1)


def kd_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """T^2 * KL(softmax(log p_teacher / T) || softmax(z_student / T)), mean over the batch.

    ``student_logits`` ``(B, K)``; ``teacher_probs`` ``(B, K)`` rows summing to one.
    """
    p = soften(teacher_probs, temperature)
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_q, p, reduction="batchmean") * temperature**2


def soft_target_ce(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, label_smoothing: float = 0.1
) -> torch.Tensor:
    """Cross-entropy to soft targets with label smoothing, mean over the batch: TCKR's generative
    KD loss (the official code's ``CrossEntropyLoss(label_smoothing=0.1)`` on the teacher's softmax
    at temperature 1). The target is ``(1 - ls) p + ls / K``. Shapes ``(B, K)``."""
    return F.cross_entropy(student_logits, teacher_probs, label_smoothing=label_smoothing)


@dataclass
class StudentConfig:
    """How a student is trained on a teacher's soft-labelled samples.

    The default is the data-free methods' recipe (CAKE, DeepInversion, DDIS): KD at temperature 4 on
    soft labels stored with the samples. TCKR's default is its paper's (:data:`TCKR_STUDENT`).
    """

    preset: str | None = "cnn_small"  # None: the teacher's architecture
    # None: the teacher's input size; TCKR and DDIS derive the generator's when it is smaller
    # (:func:`resolve_student_size`): a student cannot learn detail its training images do not have
    image_size: int | None = None
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 5e-4
    augment: float = 2.0  # max random shift in pixels
    loss: Literal["kd", "soft_ce"] = "kd"
    temperature: float = 4.0  # kd only
    label_smoothing: float = 0.0  # soft_ce and hard labels
    teacher_on_augmented: bool = False  # query the teacher on every augmented batch (needs the teacher)
    hard_labels: bool = False


def resolve_student_size(student: StudentConfig, teacher_size: int, generated_size: int) -> StudentConfig:
    """``student`` with ``image_size`` derived when unset: the generator's resolution where it is below
    the teacher's (a 16x16 generator's images upsampled to 28x28 teach a student blur that real test
    digits do not have), else the teacher's."""
    if student.image_size is not None:
        if student.image_size < 1:
            raise UserError(f"student.image_size must be >= 1, got {student.image_size}")
        return student
    return replace(student, image_size=min(teacher_size, generated_size))


def _objective(
    cfg: StudentConfig, probs: torch.Tensor, labels: torch.Tensor | None, teacher: nn.Module | None
):
    """``(targets, loss_fn, targets_of)`` for :func:`modelmine.classifiers.fit` from ``cfg``'s loss."""
    if cfg.hard_labels:  # cross-entropy to the given classes, by default the teacher's argmax
        hard = probs.argmax(1) if labels is None else labels
        return hard, lambda z, y: F.cross_entropy(z, y, label_smoothing=cfg.label_smoothing), None
    if cfg.loss == "kd":
        loss_fn = lambda z, p: kd_loss(z, p, cfg.temperature)  # noqa: E731
    elif cfg.loss == "soft_ce":
        loss_fn = lambda z, p: soft_target_ce(z, p, cfg.label_smoothing)  # noqa: E731
    else:
        raise UserError(f"student loss must be kd or soft_ce, got '{cfg.loss}'")
    targets_of = None if teacher is None else (lambda x: F.softmax(teacher(x), dim=1))
    return probs, loss_fn, targets_of


def train_student(
    cfg: StudentConfig,
    info: ClassifierInfo,
    images: torch.Tensor,
    probs: torch.Tensor,
    teacher: nn.Module | None = None,
    *,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **fit_kwargs,
) -> tuple[nn.Module, ClassifierInfo]:
    """The one student path: build ``cfg.preset`` (or the teacher's architecture, from the teacher's
    ``info``) at ``cfg.image_size`` (or the teacher's), train it on ``images`` ``(N, C, H, W)`` resized
    to that size with the teacher's probabilities ``probs`` ``(N, K)``, and return it with its
    :class:`ClassifierInfo`.

    ``cfg.loss``: ``"kd"`` (:func:`kd_loss` at ``cfg.temperature``) or ``"soft_ce"``
    (:func:`soft_target_ce` with ``cfg.label_smoothing``). With ``cfg.teacher_on_augmented`` the soft
    labels are the ``teacher``'s softmax on each augmented batch the student sees (read at the
    teacher's own size), not ``probs``. ``cfg.hard_labels``: cross-entropy to ``labels`` ``(N,)``, by
    default the argmax of ``probs``. Other keywords go to :func:`modelmine.classifiers.fit`.
    """
    if cfg.teacher_on_augmented and teacher is None:
        raise UserError("student.teacher_on_augmented needs the teacher model")
    if cfg.image_size is not None and cfg.image_size < 1:
        raise UserError(f"student.image_size must be >= 1, got {cfg.image_size}")
    preset = cfg.preset or info.preset
    size = cfg.image_size or info.image_size
    images = fit_to(images, size, info.in_channels)  # (N, C, size, size)
    query = None
    if cfg.teacher_on_augmented:
        query = (taking_any_size(teacher, info) if size != info.image_size else teacher).to(device).eval()
    student = build_classifier(preset, info.num_classes, info.in_channels, size, seed=seed)
    targets, loss_fn, targets_of = _objective(cfg, probs, labels, query)
    fit(
        student, images, targets, loss_fn, targets_of=targets_of, epochs=cfg.epochs, lr=cfg.lr,
        batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, augment=cfg.augment, seed=seed,
        device=device, **fit_kwargs,
    )  # fmt: skip
    return student, ClassifierInfo(preset, info.num_classes, info.in_channels, size, list(info.class_names))


def save_student(path: str | Path, student: nn.Module, info: ClassifierInfo) -> None:
    """A trained student as safetensors with its :class:`ClassifierInfo` (read by ``load_classifier``)."""
    save_classifier(path, student.cpu(), info)


# TCKR's generative knowledge distillation (paper and official ``evaluate.py``): the teacher's
# softmax at temperature 1 on every augmented batch, soft-target cross-entropy with label smoothing
# 0.1; the student has the teacher's architecture.
TCKR_STUDENT = dict(
    preset=None, loss="soft_ce", temperature=1.0, label_smoothing=0.1, teacher_on_augmented=True
)


def save_samples(
    run: Run, images: torch.Tensor, probs: torch.Tensor, info: ClassifierInfo, grid: torch.Tensor, nrow: int
) -> None:
    """Stage ``samples``: ``samples/`` ImageFolder of ``images`` ``(N, C, H, W)`` labelled by the argmax
    of ``probs`` ``(N, K)`` (kept as ``soft_labels.safetensors``), and ``samples_grid.png`` of ``grid``."""

    def write() -> dict:
        labels = probs.argmax(1)
        save_image_folder(run.dir / "samples", ImageSet(images, labels, list(info.class_names)), probs)
        save_grid(run.path("samples_grid.png"), grid, nrow=nrow)
        return {}

    run.stage("samples", write)


def distill_batches(
    run: Run,
    teacher: nn.Module,
    info: ClassifierInfo,
    batches: list[dict[str, torch.Tensor]],
    test: ImageSet,
    cfg: StudentConfig,
    grid: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    nrow: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict:
    """The end every data-free method shares: synthesis batches -> ``samples/`` -> student -> metrics.

    ``batches`` as returned by :func:`modelmine.runs.synthesize_batches`, each with ``images``
    ``(B, C, H, W)``, ``probs`` ``(B, K)``, ``targets`` ``(B,)`` and ``seconds``. ``grid(images,
    targets)`` picks the images of ``samples_grid.png`` (``nrow`` per row). Stage ``student`` trains
    :func:`train_student` once (``student.safetensors``; a resume reads it). Logs and returns
    ``teacher_acc``, ``student_acc`` (on ``test``), ``student_agreement`` (top-1 agreement with the
    teacher on ``test``), ``student_seconds``, ``num_samples``, ``synthesis_seconds`` and
    ``synthesis_target_acc`` (teacher argmax == target).
    """
    images = torch.cat([b["images"] for b in batches])  # (N, C, H, W)
    probs = torch.cat([b["probs"] for b in batches])  # (N, K)
    targets = torch.cat([b["targets"] for b in batches])  # (N,)
    save_samples(run, images, probs, info, grid(images, targets), nrow)

    def train() -> dict:
        t0 = time.time()
        student, student_info = train_student(
            cfg, info, images, probs, teacher, seed=seed, device=device, progress=True, desc="student"
        )
        save_student(run.path("student.safetensors"), student, student_info)
        return {"student_seconds": time.time() - t0}

    fitted = run.stage("student", train)
    student = taking_any_size(*load_classifier(run.dir / "student.safetensors"))
    t_pred = predict_logits(teacher, test.images, device=device).argmax(1)
    s_pred = predict_logits(student, test.images, device=device).argmax(1)
    return run.log_metrics(
        teacher_acc=(t_pred == test.labels).float().mean().item(),
        student_acc=(s_pred == test.labels).float().mean().item(),
        student_agreement=(s_pred == t_pred).float().mean().item(),
        student_seconds=fitted["student_seconds"],
        num_samples=len(images),
        synthesis_seconds=float(sum(b["seconds"] for b in batches)),
        synthesis_target_acc=(probs.argmax(1) == targets).float().mean().item(),
    )
