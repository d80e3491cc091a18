"""Knowledge distillation: the KD loss and student training on any image set.

``kd_loss`` is Hinton et al. (2015): KL(p_T || q_T) between the teacher's and the student's
softened distributions at temperature T, multiplied by T^2 so gradient magnitudes do not shrink as
T grows (the usual convention; at T=1 it is plain cross-entropy to soft labels, up to a constant).
Teachers' soft labels are stored as probabilities (what CAKE and TCKR save next to their images);
softening probabilities p at temperature T is ``softmax(log p / T)``, the same as softening logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .classifiers import fit


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


def train_student(
    student: nn.Module,
    images: torch.Tensor,
    teacher_probs: torch.Tensor,
    *,
    temperature: float = 1.0,
    hard_labels: bool = False,
    **fit_kwargs,
) -> nn.Module:
    """Train ``student`` on images ``(N, C, H, W)`` with the teacher's probabilities ``(N, K)``.

    ``hard_labels=True`` trains with cross-entropy to argmax of the teacher (the hard-label
    ablation). Other keyword arguments go to :func:`modelmine.classifiers.fit`.
    """
    if hard_labels:
        return fit(student, images, teacher_probs.argmax(1), F.cross_entropy, **fit_kwargs)
    return fit(student, images, teacher_probs, lambda z, p: kd_loss(z, p, temperature), **fit_kwargs)
