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


def train_student(
    student: nn.Module,
    images: torch.Tensor,
    teacher_probs: torch.Tensor,
    *,
    temperature: float = 1.0,
    hard_labels: bool = False,
    loss: str = "kd",
    label_smoothing: float = 0.0,
    teacher: nn.Module | None = None,
    labels: torch.Tensor | None = None,
    **fit_kwargs,
) -> nn.Module:
    """Train ``student`` on images ``(N, C, H, W)`` with the teacher's probabilities ``(N, K)``.

    ``loss``: ``"kd"`` (:func:`kd_loss` at ``temperature``) or ``"soft_ce"`` (:func:`soft_target_ce`
    with ``label_smoothing``). With a ``teacher`` the soft labels are its softmax on each augmented
    batch the student sees (``teacher_probs`` unused), not on the stored un-augmented images.
    ``hard_labels=True`` trains with cross-entropy (and ``label_smoothing``) to ``labels`` ``(N,)``,
    by default the teacher's argmax (the hard-label ablation). Other keyword arguments go to
    :func:`modelmine.classifiers.fit`.
    """
    if hard_labels:
        hard = teacher_probs.argmax(1) if labels is None else labels
        return fit(student, images, hard, lambda z, y: F.cross_entropy(z, y, label_smoothing=label_smoothing),
                   **fit_kwargs)  # fmt: skip
    if loss == "kd":
        loss_fn = lambda z, p: kd_loss(z, p, temperature)  # noqa: E731
    elif loss == "soft_ce":
        loss_fn = lambda z, p: soft_target_ce(z, p, label_smoothing)  # noqa: E731
    else:
        raise UserError(f"student loss must be kd or soft_ce, got '{loss}'")
    targets_of = None if teacher is None else (lambda x: F.softmax(teacher(x), dim=1))
    return fit(student, images, teacher_probs, loss_fn, targets_of=targets_of, **fit_kwargs)


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


def fit_student(
    path: str | Path,
    info: ClassifierInfo,
    images: torch.Tensor,
    probs: torch.Tensor,
    cfg: StudentConfig,
    *,
    hard_labels: bool | None = None,
    labels: torch.Tensor | None = None,
    teacher: nn.Module | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **fit_kwargs,
) -> nn.Module:
    """Build ``cfg.preset`` (or the teacher's architecture from ``info``), train it with
    :func:`train_student` on ``images`` ``(N, C, H, W)`` and the teacher's ``probs`` ``(N, K)``, and
    save it to ``path`` (safetensors with its :class:`ClassifierInfo`). ``hard_labels`` overrides
    ``cfg.hard_labels`` (trained on ``labels`` ``(N,)`` when given); ``teacher`` is queried on each
    augmented batch when ``cfg.teacher_on_augmented``; other keywords go to
    :func:`modelmine.classifiers.fit`."""
    preset = cfg.preset or info.preset
    if cfg.teacher_on_augmented and teacher is None:
        raise UserError("student.teacher_on_augmented needs the teacher model")
    if cfg.image_size is not None and cfg.image_size < 1:
        raise UserError(f"student.image_size must be >= 1, got {cfg.image_size}")
    size = cfg.image_size or info.image_size
    images = fit_to(images, size, info.in_channels)  # (N, C, size, size)
    if cfg.teacher_on_augmented and size != info.image_size:  # the teacher reads at its own size
        teacher = taking_any_size(teacher, info)
    student = build_classifier(preset, info.num_classes, info.in_channels, size, seed=seed)
    train_student(
        student, images, probs, temperature=cfg.temperature,
        hard_labels=cfg.hard_labels if hard_labels is None else hard_labels, loss=cfg.loss,
        label_smoothing=cfg.label_smoothing, teacher=teacher.to(device).eval() if cfg.teacher_on_augmented else None,
        labels=labels, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay,
        augment=cfg.augment, seed=seed, device=device, **fit_kwargs,
    )  # fmt: skip
    student_info = ClassifierInfo(preset, info.num_classes, info.in_channels, size, list(info.class_names))
    save_classifier(path, student.cpu(), student_info)
    return student


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


def distill_from_samples(
    run: Run,
    teacher: nn.Module,
    info: ClassifierInfo,
    images: torch.Tensor,
    probs: torch.Tensor,
    test: ImageSet,
    cfg: StudentConfig,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Stage ``student``: train ``cfg.preset`` (or the teacher's architecture) on ``images`` ``(N, C, H, W)``
    with the teacher's probabilities ``probs`` ``(N, K)``, save ``student.safetensors``, and score it.

    Resumes from the saved student. Returns ``teacher_acc``, ``student_acc`` (on ``test``),
    ``student_agreement`` (top-1 agreement with the teacher on ``test``) and ``student_seconds``.
    """

    def fit() -> dict:
        t0 = time.time()
        fit_student(
            run.path("student.safetensors"), info, images, probs, cfg, seed=seed, device=device,
            progress=True, desc="student",
        )  # fmt: skip
        return {"student_seconds": time.time() - t0}

    fitted = run.stage("student", fit)
    student = taking_any_size(*load_classifier(run.dir / "student.safetensors"))
    t_pred = predict_logits(teacher, test.images, device=device).argmax(1)
    s_pred = predict_logits(student, test.images, device=device).argmax(1)
    return {
        "teacher_acc": (t_pred == test.labels).float().mean().item(),
        "student_acc": (s_pred == test.labels).float().mean().item(),
        "student_agreement": (s_pred == t_pred).float().mean().item(),
        "student_seconds": fitted["student_seconds"],
    }


def distill_synthetic_batches(
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
    targets)`` picks the images of ``samples_grid.png`` (``nrow`` per row). Logs and returns the
    metrics of :func:`distill_from_samples` plus ``num_samples``, ``synthesis_seconds`` and
    ``synthesis_target_acc`` (teacher argmax == target).
    """
    images = torch.cat([b["images"] for b in batches])  # (N, C, H, W)
    probs = torch.cat([b["probs"] for b in batches])  # (N, K)
    targets = torch.cat([b["targets"] for b in batches])  # (N,)
    save_samples(run, images, probs, info, grid(images, targets), nrow)
    metrics = distill_from_samples(run, teacher, info, images, probs, test, cfg, seed=seed, device=device)
    return run.log_metrics(
        **metrics,
        num_samples=len(images),
        synthesis_seconds=float(sum(b["seconds"] for b in batches)),
        synthesis_target_acc=(probs.argmax(1) == targets).float().mean().item(),
    )
