"""Metrics: membership-inference ROC (AUC, TPR at low FPR), and (later sections) accuracy-based and
image-quality scores.

ROC follows Carlini et al. (2022): report the full curve, its AUC, and the TPR at a fixed low FPR
(0.1% and 1%), read off the curve at the largest threshold whose FPR does not exceed the target.
"""

from __future__ import annotations

import numpy as np
import torch


def roc_curve(scores: torch.Tensor, is_member: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` arrays for scores ``(N,)`` (higher = member) and membership ``(N,)`` bool."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, _ = sk_roc_curve(np.asarray(is_member, dtype=bool), np.asarray(scores, dtype=np.float64))
    return fpr, tpr


def roc_auc(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    """Area under the ROC curve."""
    fpr, tpr = roc_curve(scores, is_member)
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(scores: torch.Tensor, is_member: torch.Tensor, fpr_target: float) -> float:
    """Highest TPR whose FPR is at most ``fpr_target`` (e.g. 0.001 or 0.01)."""
    fpr, tpr = roc_curve(scores, is_member)
    ok = fpr <= fpr_target
    return float(tpr[ok].max()) if ok.any() else 0.0


def membership_metrics(scores: torch.Tensor, is_member: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """``{prefix}auc``, ``{prefix}tpr_at_0.1pct_fpr``, ``{prefix}tpr_at_1pct_fpr``."""
    return {
        f"{prefix}auc": roc_auc(scores, is_member),
        f"{prefix}tpr_at_0.1pct_fpr": tpr_at_fpr(scores, is_member, 0.001),
        f"{prefix}tpr_at_1pct_fpr": tpr_at_fpr(scores, is_member, 0.01),
    }


# --------------------------------------------------------------------------------------------
# Classification Accuracy Score
# --------------------------------------------------------------------------------------------
def classification_accuracy_score(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    per_class: bool = False,
    num_classes: int | None = None,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> float | tuple[float, list[float]]:
    """CAS: accuracy of ``classifier`` on generated ``images`` ``(N, C, H, W)`` in [0, 1] against the
    class ``labels`` ``(N,)`` they were generated for.

    Ravuri & Vinyals (2019) train a classifier *on* generated data and test it on real data; here
    (deviation) a fixed classifier trained on real data scores the generated images, which measures
    class-conditional fidelity. ``per_class=True`` also returns each class's accuracy (NaN if absent).
    """
    from .classifiers import predict_logits
    from .errors import UserError

    if len(images) == 0:
        raise UserError("CAS needs at least one generated image")
    pred = predict_logits(classifier, images, batch_size=batch_size, device=device).argmax(1)
    labels = torch.as_tensor(labels).cpu()
    hit = (pred == labels).float()
    acc = hit.mean().item()
    if not per_class:
        return acc
    k = num_classes or int(labels.max()) + 1
    per = [hit[labels == c].mean().item() if (labels == c).any() else float("nan") for c in range(k)]
    return acc, per
