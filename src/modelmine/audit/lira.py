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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..teacher import TeacherConfig


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


# --------------------------------------------------------------------------------------------
# Shadow models and the `audit lira` command
# --------------------------------------------------------------------------------------------
@torch.inference_mode()
def query_views(
    model: torch.nn.Module, views: torch.Tensor, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits ``(N, A, K)`` of ``model`` on augmented views ``(N, A, C, H, W)``."""
    from ..classifiers import predict_logits

    n, a = views.shape[:2]
    return predict_logits(model, views.flatten(0, 1), device=device).view(n, a, -1)


def train_shadows(
    population,
    keep: torch.Tensor,
    recipe,
    out_dir: Path,
    views: torch.Tensor,
    device: str | torch.device = "cpu",
    progress: bool = True,
    rows: Sequence[int] | None = None,
) -> torch.Tensor:
    """Train one shadow per row of ``keep`` ``(M, N)`` on ``population`` (an ImageSet) with ``recipe``
    (a :class:`~modelmine.classifiers.TeacherConfig`, the target's training recipe) and return their
    logits on ``views`` ``(N, A, C, H, W)`` as ``(M, N, A, K)``.

    Each shadow's logits are saved to ``out_dir/shadow_XXX.safetensors`` as it finishes, so a killed
    run loses at most one shadow and later audits of other targets reuse them. ``rows`` trains only
    those shadows (and returns only theirs), so separate processes can share the work.
    """
    from tqdm.auto import tqdm

    from ..classifiers import build_classifier, train_classifier
    from ..runs import atomic_save_tensors, load_tensors

    out_dir.mkdir(parents=True, exist_ok=True)
    c = population.images.shape[1]
    all_logits = []
    for m in tqdm(range(keep.shape[0]) if rows is None else rows, desc="shadows", disable=not progress):
        path = out_dir / f"shadow_{m:03d}.safetensors"
        if path.exists():
            saved = load_tensors(path)
            if torch.equal(saved["keep"], keep[m]):
                all_logits.append(saved["logits"])
                continue
        model = build_classifier(
            recipe.preset, population.num_classes, c, recipe.image_size, seed=recipe.seed + 1000 + m
        )
        idx = torch.nonzero(keep[m]).squeeze(1)
        train_classifier(
            model, population.images[idx], population.labels[idx], epochs=recipe.epochs, lr=recipe.lr,
            batch_size=recipe.batch_size, weight_decay=recipe.weight_decay, augment=recipe.augment,
            seed=recipe.seed + 1000 + m, device=device,
        )  # fmt: skip
        logits = query_views(model, views, device)
        atomic_save_tensors(path, {"logits": logits, "keep": keep[m]})
        all_logits.append(logits)
    return torch.stack(all_logits)


@dataclass
class LiraConfig:
    """`modelmine audit lira`: which model to audit, on which population, with how many shadows."""

    target: str | None = None  # classifier .safetensors; None trains the default teacher on private digits
    population: str | None = None  # ImageFolder of candidates; default: digits train (members) + heldout
    members: str | None = None  # text file of population files (``class/name.png``) the target trained on
    teacher: TeacherConfig = field(default_factory=TeacherConfig)  # target's recipe, reused for shadows
    num_shadows: int = 16
    keep_seed: int = 0
    fix_variance: bool = False  # the headline metrics' variance; both variants are reported
    device: str = "auto"


def load_population(cfg: LiraConfig):
    """``(population ImageSet, is_member (N,) bool)`` for the audit."""
    from ..data import concat, load_digits, load_image_folder, read_member_list

    if cfg.population is None:
        if cfg.target is not None and cfg.members is None:
            raise UserError(
                "auditing your own --target needs --population and --members (which files it trained on)"
            )
        train = load_digits("train", cfg.teacher.image_size)
        heldout = load_digits("heldout", cfg.teacher.image_size)
        member = torch.cat(
            [torch.ones(len(train), dtype=torch.bool), torch.zeros(len(heldout), dtype=torch.bool)]
        )
        return concat([train, heldout]), member
    pop = load_image_folder(cfg.population, size=cfg.teacher.image_size)
    if cfg.members is None:
        raise UserError("--population needs --members: a text file listing the files the target trained on")
    return pop, read_member_list(cfg.members, pop.files or [])


def score_target(
    target_logits: torch.Tensor, labels: torch.Tensor, shadow_logits: torch.Tensor, keep: torch.Tensor
) -> dict:
    """All four LiRA variants for one target: ``{"online", "online_fixed", "offline", "offline_fixed"}`` -> ``(N,)``."""
    t = logit_scaled_confidence(target_logits, labels)
    s = logit_scaled_confidence(shadow_logits, labels)
    return {
        "online": score_online(t, s, keep, False),
        "online_fixed": score_online(t, s, keep, True),
        "offline": score_offline(t, s, keep, False),
        "offline_fixed": score_offline(t, s, keep, True),
    }


def run(cfg: LiraConfig, out: Path) -> dict:
    """Train (or reuse) shadows, score the target, write ROC metrics, scores and ``roc.png``."""
    from ..classifiers import check_compatible, load_classifier
    from ..distributed import processes, resolve_device
    from ..metrics import membership_metrics, roc_curve
    from ..report import plot_roc
    from ..runs import Run, atomic_save_tensors
    from ..teacher import obtain_teacher, with_teacher_size

    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg = with_teacher_size(cfg, cfg.population or "digits")
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    population, is_member = load_population(cfg)
    if cfg.target is not None:
        target, info = load_classifier(cfg.target, cfg.teacher.preset)
    else:
        with procs.main_first():  # trained once; the other processes load it
            target, info = obtain_teacher(cfg.teacher, run_.dir, None, device)
    check_compatible(info, tuple(population.images.shape[1:]), population.num_classes, "population")
    views = shifted_views(population.images)
    keep = make_keep_masks(cfg.num_shadows, len(population), cfg.keep_seed)
    t0 = time.time()
    if procs.count > 1:  # each process trains shadows index, index + count, ...; the main one scores
        rows = procs.shard.items(cfg.num_shadows)
        train_shadows(population, keep, cfg.teacher, run_.path("shadows"), views, device, rows=rows)
        procs.barrier()
        if not procs.is_main:
            return {}
    shadow_logits = train_shadows(population, keep, cfg.teacher, run_.path("shadows"), views, device)
    scores = score_target(query_views(target, views, device), population.labels, shadow_logits, keep)
    atomic_save_tensors(run_.path("scores.safetensors"), {**scores, "is_member": is_member})
    metrics: dict = {}
    for name, sc in scores.items():
        prefix = "" if name == ("online_fixed" if cfg.fix_variance else "online") else f"{name}_"
        metrics.update(membership_metrics(sc, is_member, prefix))
    plot_roc(
        run_.path("roc.png"), {k: roc_curve(v, is_member) for k, v in scores.items()}, "LiRA on the target"
    )
    return run_.log_metrics(
        **metrics, num_shadows=cfg.num_shadows, num_members=int(is_member.sum()),
        num_nonmembers=int((~is_member).sum()), shadow_seconds=time.time() - t0,
    )  # fmt: skip
