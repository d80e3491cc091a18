"""Metrics: membership-inference ROC (AUC, TPR at low FPR), the Classification Accuracy Score, and
image quality (FID, KID, an Inception-Score-style score, precision/recall) on a pluggable feature
extractor.

ROC follows Carlini et al. (2022): report the full curve, its AUC, and the TPR at a fixed low FPR
(0.1% and 1%), read off the curve at the largest threshold whose FPR does not exceed the target.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_curve as sk_roc_curve

from .classifiers import penultimate, predict_logits
from .data import check_members
from .errors import UserError


def roc_curve(scores: torch.Tensor, is_member: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` arrays for scores ``(N,)`` (higher = member) and membership ``(N,)`` bool."""

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


def membership_metrics(
    scores: torch.Tensor, is_member: torch.Tensor, prefix: str = "", fprs: tuple[float, ...] = (0.001, 0.01)
) -> dict[str, float]:
    """``{prefix}auc`` and ``{prefix}tpr_at_<100 f>pct_fpr`` for each FPR f in ``fprs`` (by default
    ``tpr_at_0.1pct_fpr`` and ``tpr_at_1pct_fpr``; :func:`reported_fprs` picks what a count allows).
    Refused (one-line UserError) without both members and non-members, or with non-finite scores,
    where none of them means anything."""

    check_members(torch.as_tensor(is_member, dtype=torch.bool), f"membership scoring ({prefix or 'target'})")
    if not bool(torch.isfinite(torch.as_tensor(scores, dtype=torch.float64)).all()):
        raise UserError("membership scores hold NaN/inf; the shadow or target models diverged")
    out = {f"{prefix}auc": roc_auc(scores, is_member)}
    for f in sorted(fprs):
        out[f"{prefix}tpr_at_{100 * f:g}pct_fpr"] = tpr_at_fpr(scores, is_member, f)
    return out


LOW_FPR_MIN_NONMEMBERS = 1000  # TPR at 0.1% FPR needs at least 1,000 non-members to mean 0.1%


def reported_fprs(num_nonmembers: int) -> tuple[float, ...]:
    """The FPRs at which a TPR is reported: 1%, and 0.1% only with at least 1,000 non-members (with
    fewer, a single false positive already exceeds 0.1% and the number is the TPR at FPR 0)."""
    return (0.001, 0.01) if num_nonmembers >= LOW_FPR_MIN_NONMEMBERS else (0.01,)


def low_fpr_note(num_nonmembers: int) -> str | None:
    """One line saying why TPR at 0.1% FPR is not reported, or ``None`` when it is."""
    if num_nonmembers >= LOW_FPR_MIN_NONMEMBERS:
        return None
    return (
        f"TPR at 0.1% FPR not reported: {num_nonmembers} non-members, and it needs at least "
        f"{LOW_FPR_MIN_NONMEMBERS:,} (one false positive is already {100 / max(num_nonmembers, 1):.2g}% FPR)"
    )


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


# --------------------------------------------------------------------------------------------
# Image quality on a pluggable feature extractor (FID, KID, IS-style score, precision/recall)
# --------------------------------------------------------------------------------------------
# A feature extractor is any callable images (N, C, H, W) in [0, 1] -> features (N, D). On the
# embedded default it is the penultimate layer of a classifier trained on the private data
# (`classifier_features`); for real users, Inception features when torchmetrics is installed
# (`inception_features`). Numbers are only comparable under the same extractor.


def classifier_features(model: torch.nn.Module, batch_size: int = 512, device: str | torch.device = "cpu"):
    """Feature extractor from a classifier's penultimate layer: ``f(images) -> (N, D)``."""

    @torch.inference_mode()
    def extract(images: torch.Tensor) -> torch.Tensor:
        model.eval().to(device)
        chunks = [
            penultimate(model, images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks)

    return extract


def inception_features(device: str | torch.device = "cpu"):
    """Inception-v3 pool features (torchmetrics' FID network), for users whose weights are cached."""

    try:
        from torchmetrics.image.fid import NoTrainInceptionV3  # optional: the [fid] extra
    except ImportError:
        raise UserError(
            "Inception features need torchmetrics[image]: pip install 'torchmetrics[image]'"
        ) from None
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"]).to(device).eval()

    @torch.inference_mode()
    def extract(images: torch.Tensor) -> torch.Tensor:
        x = images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)
        out = [
            net((x[i : i + 64] * 255).round().to(torch.uint8).to(device)).float().cpu()
            for i in range(0, len(x), 64)
        ]
        return torch.cat(out)

    return extract


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID formula on features ``(N, D)``, ``(M, D)``: ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^{1/2}).

    Tr((S_r S_f)^{1/2}) is the sum of square roots of the eigenvalues of S_r S_f (real and
    non-negative up to round-off, as S_r S_f is similar to a PSD matrix).
    """
    a, b = real.double(), fake.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0)
    return float(((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum())


def kernel_inception_distance(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with kernel (x.y/d + 1)^3, mean and std over subsets."""
    g = torch.Generator().manual_seed(seed)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    vals = []
    for _ in range(subsets):  # a few random subsets; each is one batched kernel computation
        x = real[torch.randperm(len(real), generator=g)[:m]].double()
        y = fake[torch.randperm(len(fake), generator=g)[:m]].double()
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = m * (m - 1)
        vals.append((kxx.sum() - kxx.trace()) / off + (kyy.sum() - kyy.trace()) / off - 2 * kxy.mean())
    v = torch.stack(vals)
    return float(v.mean()), float(v.std()) if len(v) > 1 else 0.0


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS-style score exp(E_x KL(p(y|x) || p(y))) from a classifier's logits ``(N, K)``; mean, std over splits."""
    logp = torch.log_softmax(logits.double(), 1)
    scores = []
    for chunk in torch.chunk(logp, max(1, min(splits, len(logp)))):
        log_py = torch.logsumexp(chunk, 0) - torch.log(torch.tensor(float(len(chunk)), dtype=chunk.dtype))
        scores.append(torch.exp((chunk.exp() * (chunk - log_py)).sum(1).mean()))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std()) if len(s) > 1 else 0.0


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    dist = torch.cdist(x, x)
    return dist.kthvalue(k + 1, dim=1).values  # k+1: the nearest is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds on features.

    precision: share of fake samples inside some real sample's k-NN ball; recall: the converse.
    """
    a, b = real.double(), fake.double()
    ra, rb = _knn_radii(a, k), _knn_radii(b, k)
    d = torch.cdist(b, a)  # (M, N)
    precision = (d <= ra[None, :]).any(1).double().mean()
    recall = (d.T <= rb[None, :]).any(1).double().mean()
    return float(precision), float(recall)
