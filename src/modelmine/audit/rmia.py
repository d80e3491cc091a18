"""RMIA membership inference (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power Membership Inference
Attacks", ICML 2024, arXiv:2312.03262; official code: github.com/privacytrustlab/ml_privacy_meter,
``modules/mia/attacks/rmia.py`` and the paper's experiments in ``research/2023_rmia``).

A functional core like :mod:`modelmine.audit.lira`: signals (logits, labels, keep masks) in, scores
out, higher = more likely a member. It reads the same reference (shadow) models and query views as
LiRA, so one set of trained models serves both attacks (``modelmine audit membership``).

Equations, for a target theta, reference models theta_1..theta_M and query views v_1..v_A:

- ``Pr(x|theta) = 1/A sum_v softmax(f_theta(v(x)))_y``: the probability of the true class,
  averaged over the views (:func:`true_class_probability`).
- ``Pr(x)``, the probability under a model trained like the target (:func:`reference_probability`):
  online, the mean of ``Pr(x|theta_m)`` over all M reference models; offline, only the models that
  did not train on x, ``Pr_OUT(x)``, corrected by the paper's linear approximation
  ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` (from ``Pr_IN(x) = a Pr_OUT(x) + (1 - a)`` and
  ``Pr(x) = (Pr_IN(x) + Pr_OUT(x)) / 2``).
- The pairwise likelihood ratio ``LR(x, z) = (Pr(x|theta) / Pr(x)) / (Pr(z|theta) / Pr(z))`` against
  population samples z that are not members of the target.
- ``score(x) = |{z in Z : LR(x, z) >= gamma}| / |Z|`` (:func:`score_rmia`), batched: with
  ``r = Pr(.|theta) / Pr(.)``, ``LR(x, z) >= gamma`` is ``gamma r_z <= r_x``, so one sort of
  ``gamma r_z`` and a binary search per x count every pair in O((N + |Z|) log |Z|). With gamma = 1
  the score is the rank of x's ratio among the population's, a monotone function of ``r_x``.

Defaults:

| setting | paper or official code | ours | reason |
|---|---|---|---|
| gamma | 1 in the library (``ratios > 1``); 2 in the paper's experiment configs | 1 | the library's; the configs' 2 goes with their temperature-2 soft-margin signal, which spreads the ratios: with the plain softmax a trained classifier's ratios lie close to 1, so gamma = 2 is reached by almost no pair and nearly every x gets the same count (a chance-level AUC on the digits) |
| a (offline) | 0.3 in the library, or tuned on a paired reference model; 0.2-0.33 per dataset in the paper's configs | 0.3 | the library's default; tuning needs an extra model pair |
| signal | softmax of the true class (library, temperature 1); the paper's configs also use temperature 2 and a soft-margin Taylor softmax | softmax, temperature 1 | the library's; no extra hyper-parameters |
| mean over models | plain (library); 20% trimmed (paper's configs) | plain | with 1-4 reference models there is nothing to trim |
| query views | none (library); per-view LR thresholds and a majority vote (paper's configs) | ``Pr`` averaged over LiRA's views | one LR per pair; the same queries as LiRA |
| population Z | population data outside the target's training set | the audit's non-members, one left out per x (:func:`leave_one_out`) | the auditor knows them; see below |

Deviations. Our reference models are trained like the target, each on |members| of the N
population examples (p = |members| / N, :func:`modelmine.audit.lira.keep_masks`), not on halves of a
separate population, and the population samples z are the audit's own non-members:

- Online ``Pr(x)`` averages all models, which hold x with probability p (the paper's p = 1/2 makes
  it the equal mixture the offline formula approximates); this is the marginal ``Pr(x)`` over
  models trained like the target.
- Z holds the very non-members being scored, so a non-member's own pair (``LR(x, x) = 1``, which
  says nothing) is left out; so that membership never changes how a score is counted, every x
  then counts |Z| - 1 pairs, a member leaving out one population sample drawn with ``seed``. (Left
  out only for non-members, equal counts c land on different grids, c / (|Z| - 1) against c / |Z|,
  and order members below non-members: near-perfect separation from nothing but the bookkeeping.)
  With gamma <= 1 the non-member that no other beats scores 1, as a member does.
- Offline, an example that no reference model left out (few models, p > 1/2) takes ``Pr_OUT`` from
  its IN models by inverting the linear approximation, ``Pr_OUT = (Pr_IN - (1 - a)) / a`` (the
  library's rule for a single reference model), clipped at 0 so that ``Pr(x) >= (1 - a) / 2 > 0``.

Measured AUCs against the number of reference models, beside LiRA's: ``benchmarks/mia_refs.py``, whose
results ``benchmarks/RESULTS.md`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError


@dataclass
class RmiaConfig:
    """RMIA's settings (defaults and sources in the module docstring)."""

    offline_a: float = 0.3  # Pr_IN = a Pr_OUT + (1 - a): the offline linear approximation
    gamma: float = 1.0  # a population sample z counts when LR(x, z) >= gamma
    seed: int = 0  # which population sample a member's score leaves out (see leave_one_out)


def check_config(cfg: RmiaConfig) -> None:
    if not 0 <= cfg.offline_a <= 1:
        raise UserError(f"rmia.offline_a must be in [0, 1], got {cfg.offline_a}")
    if not cfg.gamma > 0:
        raise UserError(f"rmia.gamma must be > 0, got {cfg.gamma}")


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``Pr(x|theta)``: softmax probability of the true class averaged over views, for logits
    ``(..., N, A, K)`` and labels ``(N,)`` -> ``(..., N)`` (float64)."""
    onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(torch.float64)[:, None, :]  # (N, 1, K)
    return (torch.softmax(logits.double(), -1) * onehot).sum(-1).mean(-1)


def reference_probability(
    ref_probs: torch.Tensor, keep: torch.Tensor, offline: bool = False, offline_a: float = 0.3
) -> torch.Tensor:
    """``Pr(x)`` from the reference models' ``Pr(x|theta_m)`` ``(M, N)`` and keep masks ``(M, N)`` -> ``(N,)``.

    Online: the mean over all models. Offline: ``((1 + a) Pr_OUT(x) + (1 - a)) / 2`` with ``Pr_OUT``
    the mean over the models that left x out (for an x that none left out: inverted from its IN
    models, see the module docstring).
    """
    p = ref_probs.double()
    if not offline:
        return p.mean(0)
    w_out = (~keep).to(p.dtype)
    n_out, n_in = w_out.sum(0), (1 - w_out).sum(0)
    p_out = (w_out * p).sum(0) / n_out.clamp_min(1)
    p_in = ((1 - w_out) * p).sum(0) / n_in.clamp_min(1)
    if offline_a > 0:
        inverted = ((p_in - (1 - offline_a)) / offline_a).clamp_min(0)
    else:  # a = 0 says Pr_IN is always 1: nothing to invert, Pr(x) = 1/2 + Pr_OUT / 2 with Pr_OUT unknown
        inverted = torch.zeros_like(p_in)
    p_out = torch.where(n_out > 0, p_out, inverted)
    return ((1 + offline_a) * p_out + (1 - offline_a)) / 2


def leave_one_out(is_population: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """For each example ``(N,)``, the position in the population ``z = x[is_population]`` of the one
    sample its score leaves out: itself for a population sample, a seeded random one for the others.

    Every score then counts |Z| - 1 pairs: were x left out only where it belongs to Z, a member would
    count c of |Z| and a non-member c of |Z| - 1, and with equal counts c the grids alone would order
    them by membership.
    """
    position = torch.cumsum(is_population.long(), 0) - 1
    size = int(is_population.sum())
    drawn = torch.randint(
        0, max(size, 1), (len(is_population),), generator=torch.Generator().manual_seed(seed)
    )
    return torch.where(is_population, position, drawn)


def score_rmia(
    ratio_x: torch.Tensor, ratio_z: torch.Tensor, gamma: float = 1.0, left_out: torch.Tensor | None = None
) -> torch.Tensor:
    """The share of population samples z with ``LR(x, z) = ratio_x / ratio_z >= gamma``.

    ``ratio_x`` ``(N,)`` and ``ratio_z`` ``(Z,)`` are ``Pr(.|theta) / Pr(.)``; ``left_out`` ``(N,)``
    gives the position in z of one sample each x does not count (:func:`leave_one_out`), or ``None``
    to count all of them. Returns ``(N,)`` in [0, 1].
    """
    scaled = gamma * ratio_z.double()
    r = ratio_x.double()
    counts = torch.searchsorted(scaled.sort().values, r, right=True)  # pairs with gamma r_z <= r_x
    total = len(ratio_z)
    if left_out is not None:
        counts = counts - (scaled[left_out] <= r).long()  # the same floats as in the sorted array
        total -= 1
    return (counts.double() / max(total, 1)).float()


def score_target(
    target_logits: torch.Tensor,
    labels: torch.Tensor,
    ref_logits: torch.Tensor,
    keep: torch.Tensor,
    is_population: torch.Tensor,
    cfg: RmiaConfig | None = None,
    variants: tuple[str, ...] = ("online", "offline"),
) -> dict[str, torch.Tensor]:
    """RMIA scores ``(N,)`` for every example, online and offline.

    ``target_logits`` ``(N, A, K)``, ``labels`` ``(N,)``, the reference models' ``ref_logits``
    ``(M, N, A, K)`` and ``keep`` ``(M, N)``; ``is_population`` ``(N,)`` marks the examples used as
    population samples z (known non-members of the target).
    """
    cfg = cfg or RmiaConfig()
    if not is_population.any():
        raise UserError("RMIA needs population samples that are not members of the target")
    p_target = true_class_probability(target_logits, labels)  # (N,)
    p_refs = true_class_probability(ref_logits, labels)  # (M, N)
    left_out = leave_one_out(is_population, cfg.seed)
    out = {}
    for variant in variants:
        pr = reference_probability(p_refs, keep, variant == "offline", cfg.offline_a)
        ratio = p_target / pr
        out[variant] = score_rmia(ratio, ratio[is_population], cfg.gamma, left_out)
    return out
