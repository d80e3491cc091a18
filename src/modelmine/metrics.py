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
