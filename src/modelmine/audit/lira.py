"""LiRA membership inference (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022).

A functional core: signals (logits, labels, keep masks) in, scores out, as in the paper's reference
code. Higher score = more likely a member.

- Signal (paper Sec. IV-B, "logit scaling"): phi(f(x)_y) = log p_y - log sum_{y' != y} p_y', computed
  stably from logits as ``z_y - logsumexp_{y' != y} z_y'``, one value per augmented view.
- Shadow models are trained on random halves of a population; ``make_keep_masks`` puts every
  example IN for exactly half of them (the reference code's construction).
- Online attack (Alg. 1): per example and view, Gaussians N(mu_in, s_in^2) / N(mu_out, s_out^2) fitted to
  the shadows that did / did not train on it; score = log N(t; in) - log N(t; out), averaged over
  views (the reference code's multi-query rule).
- Offline attack (Sec. VI-C): only OUT shadows; the paper's one-sided test, score =
  log Pr[Z < t] with Z ~ N(mu_out, s_out^2). (The reference code's offline variant uses the two-sided
  -log N(t; out) instead; the one-sided test is the paper's and cannot flag unusually *low*
  confidence as membership.)
- Fixed variance (Sec. VI-B): one global s_in and s_out pooled over all examples (the within-example
  variance averaged over examples), better with few shadows. Means are per-example averages (the
  paper's "mean"; the reference code uses the median).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """phi = z_y - logsumexp_{y' != y} z_y' for logits ``(..., N, A, K)`` and labels ``(N,)`` -> ``(..., N, A)``."""
    k = logits.shape[-1]
    onehot = F.one_hot(labels, k).bool()[:, None, :]  # (N, 1, K), broadcast over views and models
    z_y = (logits * onehot).sum(-1)
    others = logits.masked_fill(onehot, float("-inf"))
    return z_y - torch.logsumexp(others, dim=-1)


def make_keep_masks(num_shadows: int, num_examples: int, seed: int = 0) -> torch.Tensor:
    """``(M, N)`` bool: shadow m trains on example n. Each example is IN for exactly floor(M/2) shadows."""
    if num_shadows < 2:
        raise UserError(f"LiRA needs at least 2 shadow models, got {num_shadows}")
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(num_shadows, num_examples, generator=g).argsort(0)
    return order < num_shadows // 2


def fit_gaussians(
    shadow_scores: torch.Tensor, keep: torch.Tensor, fix_variance: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """IN/OUT Gaussians per example and view from shadow signals ``(M, N, A)`` and ``keep`` ``(M, N)``.

    Returns ``mu_in, sd_in, mu_out, sd_out``, each ``(N, A)`` (sds broadcast when fixed).
    """
    s = shadow_scores.double()
    w_in = keep[..., None].to(s.dtype).expand_as(s)
    w_out = 1 - w_in

    def moments(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = w.sum(0)
        mu = (w * s).sum(0) / n.clamp_min(1)
        var = (w * (s - mu) ** 2).sum(0) / n.clamp_min(1)
        if fix_variance:
            var = var.mean().expand_as(var)  # one pooled within-example variance for all examples
        return mu, var.sqrt().clamp_min(1e-6)

    mu_in, sd_in = moments(w_in)
    mu_out, sd_out = moments(w_out)
    return mu_in, sd_in, mu_out, sd_out


def _normal_logpdf(x: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    return (
        -0.5 * ((x - mu) / sd) ** 2
        - torch.log(sd)
        - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))
    )


def score_online(
    target_scores: torch.Tensor, shadow_scores: torch.Tensor, keep: torch.Tensor, fix_variance: bool = False
) -> torch.Tensor:
    """Online LiRA: ``target_scores`` ``(N, A)``, ``shadow_scores`` ``(M, N, A)``, ``keep`` ``(M, N)`` -> ``(N,)``."""
    mu_in, sd_in, mu_out, sd_out = fit_gaussians(shadow_scores, keep, fix_variance)
    t = target_scores.double()
    return (_normal_logpdf(t, mu_in, sd_in) - _normal_logpdf(t, mu_out, sd_out)).mean(-1).float()


def score_offline(
    target_scores: torch.Tensor, shadow_scores: torch.Tensor, keep: torch.Tensor, fix_variance: bool = False
) -> torch.Tensor:
    """Offline LiRA (OUT shadows only, one-sided): inputs as :func:`score_online` -> ``(N,)``."""
    _, _, mu_out, sd_out = fit_gaussians(shadow_scores, keep, fix_variance)
    return torch.special.log_ndtr((target_scores.double() - mu_out) / sd_out).mean(-1).float()


def shifted_views(
    images: torch.Tensor, shifts: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
) -> torch.Tensor:
    """Augmented queries: each image shifted by whole pixels (zero fill) -> ``(N, A, C, H, W)``.

    Small shifts are label-preserving for any image data (flips are not, e.g. for digits).
    """
    n, c, h, w = images.shape
    p = max(max(abs(dx), abs(dy)) for dx, dy in shifts)
    padded = F.pad(images, (p, p, p, p))
    views = [padded[:, :, p - dy : p - dy + h, p - dx : p - dx + w] for dx, dy in shifts]
    return torch.stack(views, 1)
