"""LiRA membership inference (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022).

A functional core: signals (logits, labels, keep masks) in, scores out, as in the paper's reference
code. Higher score = more likely a member.

- Signal (paper Sec. IV-B, "logit scaling"): phi(f(x)_y) = log p_y - log sum_{y' != y} p_y', computed
  stably from logits as ``z_y - logsumexp_{y' != y} z_y'``, one value per augmented view.
- Shadow models are trained like the target: its recipe, and each on as many population examples
  as the target trained on, p = |members| / |population| (the reference code's halves are p = 1/2;
  for the digits the target trains on 1,077 of 1,437). ``keep_masks`` puts every example IN for
  floor(M p) or ceil(M p) of the first M shadows, for every M, and row m never depends on the
  total: more shadows later reuse the ones trained (the reference code's construction, a random
  order per example, changes every mask when M grows).
- Queries (the reference code's): whole-pixel shifts with reflect padding, and optionally the same
  shifts of the mirrored image (``query_flip``). The flip is off by default: it only makes sense
  for data that is mirror-symmetric and a target trained with flips (CIFAR in the reference code);
  digits are not (a mirrored 2, 3, 4, 5, 6, 7 or 9 is no digit) and our recipe never flips, so
  mirrored queries would be out of distribution for target and shadows alike.
- Online attack (Alg. 1): per example and view, Gaussians N(mu_in, s_in^2) / N(mu_out, s_out^2) fitted to
  the shadows that did / did not train on it; score = log N(t; in) - log N(t; out), averaged over
  views (the reference code's multi-query rule).
- Offline attack (Sec. VI-C): only OUT shadows; the paper's one-sided test, score =
  log Pr[Z < t] with Z ~ N(mu_out, s_out^2). (The reference code's offline variant uses the two-sided
  -log N(t; out) instead; the one-sided test is the paper's and cannot flag unusually *low*
  confidence as membership.)
- Fixed variance (Sec. VI-B): one global s_in and s_out pooled over all examples (the within-example
  variance averaged over examples), better with few shadows: the headline ``auc`` uses it below 64
  shadows, as the paper recommends (``fix_variance`` overrides; every variant is reported). Means
  are per-example averages (the paper's "mean"; the reference code uses the median).
- Few shadows with p != 1/2 leave some examples without an IN (or OUT) shadow; :func:`fit_gaussians`
  then shifts the other group's mean by the average IN - OUT gap (the analogue of RMIA's offline
  linear approximation) instead of failing.

Defaults (paper = Carlini et al. 2022; reference = ``research/mi_lira_2021`` of
github.com/tensorflow/privacy, ``train.py``, ``inference.py``, ``score.py``):

| setting | paper or reference code | ours | reason |
|---|---|---|---|
| shadow models | 256 for the paper's headline results; the reference scripts train 16 | ``num_shadows = 16`` (more later reuse these) | CPU budget |
| training-set size | half of the population (``pkeep = 0.5``) | as many examples as the target trained on | shadows trained like the target |
| keep masks | a random order per example (every mask changes when M grows) | prefix-stable balanced rows (:func:`balanced_keep_rows`) | adding shadows reuses the trained ones |
| signal | logit scaling ``phi`` (log-odds of the true class) | the same | |
| queries | the image and its mirror (``shift = 0``, ``reflect = True``); shifts with reflect padding optional | 5 views: unshifted and 1-pixel shifts up, down, left, right, reflect padding; mirror off (``query_flip``) | digits are not mirror-symmetric; small shifts are label-preserving for any images |
| model mode for queries | ``training=True`` (BatchNorm on batch statistics) | eval mode (running statistics) | the model as deployed; no dependence on the query batch |
| online score | ``log N(t; in) - log N(t; out)``, averaged over queries | the same | |
| offline score | paper: one-sided ``log Pr[Z < t]``; reference: two-sided ``-log N(t; out)`` | one-sided | the paper's |
| variance | per-example; global ("fixed") recommended below 64 shadows | fixed below 64 shadows (``fix_variance=None``), every variant reported | the paper's recommendation |
| mean | median over shadows (reference) | mean | the paper's |

Measured AUCs and TPRs against the number of shadows: ``benchmarks/RESULTS.md`` (LiRA).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..classifiers import (
    build_classifier,
    check_compatible,
    load_classifier,
    predict_logits,
    train_classifier,
)
from ..config import Runtime
from ..data import is_builtin, population
from ..distributed import processes, resolve_device
from ..errors import UserError
from ..metrics import low_fpr_note, membership_metrics, reported_fprs, roc_curve
from ..report import plot_roc
from ..runs import Run, Task, atomic_save_tensors, item_seed, load_tensors, run_phase
from ..teacher import TeacherConfig, obtain_teacher, resolve_teacher


def logit_scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """phi = z_y - logsumexp_{y' != y} z_y' for logits ``(..., N, A, K)`` and labels ``(N,)`` -> ``(..., N, A)``."""
    k = logits.shape[-1]
    onehot = F.one_hot(labels, k).bool()[:, None, :]  # (N, 1, K), broadcast over views and models
    z_y = (logits * onehot).sum(-1)
    others = logits.masked_fill(onehot, float("-inf"))
    return z_y - torch.logsumexp(others, dim=-1)


def balanced_keep_rows(num_models: int, num_examples: int, num_in: int, seed: int = 0) -> torch.Tensor:
    """``(M, N)`` bool: model m trains on example n. Each row holds exactly ``num_in`` examples, and every
    prefix of M' rows holds each example IN for floor(M' p) or ceil(M' p) of them, p = num_in / N.

    Rows are drawn one at a time: after row m every example's IN count must be floor or ceil of
    (m + 1) p, so examples behind are forced IN, examples ahead are forced OUT, and the remaining
    places go to a random subset (seeded by ``seed`` and m) of the rest; this is always feasible.
    Row m depends only on ``seed``, m and the rows before it, never on ``num_models``: the first M
    masks stay the same when more models are added, so trained models are reused.
    """
    if not 0 < num_in < num_examples:
        raise UserError(
            f"reference models need members and non-members: {num_in} IN of {num_examples} examples"
        )
    counts = torch.zeros(num_examples, dtype=torch.long)  # IN count of each example so far
    rows = []
    for m in range(num_models):  # one row per model (a handful), each batched over the examples
        lo = (m + 1) * num_in // num_examples  # allowed counts after this row: lo .. hi
        hi = -(-(m + 1) * num_in // num_examples)
        forced = counts < lo
        free = (counts >= lo) & (counts < hi)
        priority = torch.rand(num_examples, generator=torch.Generator().manual_seed(item_seed(seed, m)))
        priority[~free] = 2.0  # never picked
        row = forced.clone()
        row[priority.argsort()[: num_in - int(forced.sum())]] = True
        counts += row
        rows.append(row)
    return torch.stack(rows) if rows else torch.zeros(0, num_examples, dtype=torch.bool)


def make_keep_masks(
    num_shadows: int, num_examples: int, seed: int = 0, num_in: int | None = None
) -> torch.Tensor:
    """``(M, N)`` bool: shadow m trains on example n (:func:`balanced_keep_rows`; ``num_in`` defaults to
    half the examples, the reference code's split, which puts each example IN for exactly M/2)."""
    if num_shadows < 2:
        raise UserError(f"LiRA needs at least 2 shadow models, got {num_shadows}")
    return balanced_keep_rows(
        num_shadows, num_examples, num_examples // 2 if num_in is None else num_in, seed
    )


def keep_masks(num_models: int, is_member: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The reference models' ``(M, N)`` masks for a target that trained on ``is_member`` ``(N,)``: each
    model trains on as many examples as the target (``|members|``), so it is trained like the target."""
    if num_models < 1:
        raise UserError(f"a membership audit needs at least 1 reference model, got {num_models}")
    return balanced_keep_rows(num_models, len(is_member), int(is_member.sum()), seed)


def fit_gaussians(
    shadow_scores: torch.Tensor, keep: torch.Tensor, fix_variance: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """IN/OUT Gaussians per example and view from shadow signals ``(M, N, A)`` and ``keep`` ``(M, N)``.

    Returns ``mu_in, sd_in, mu_out, sd_out``, each ``(N, A)`` (sds broadcast when fixed). With few
    shadows and p != 1/2 an example can lack IN (or OUT) shadows: its missing mean is the other
    group's mean shifted by the IN - OUT gap averaged over every (shadow, example) pair (unbiased, as
    IN/OUT is assigned at random), and a per-example variance from fewer than 2 shadows is replaced
    by the pooled one. The pooled (fixed) variance averages the within-example variances of the
    examples with at least 2 shadows in the group; without any, the other group's, and with a single
    shadow per example (M = 1), the variance of all signals (between- plus within-example).
    """
    s = shadow_scores.double()
    w_in = keep[..., None].to(s.dtype).expand_as(s)
    w_out = 1 - w_in
    gap = (w_in * s).sum() / w_in.sum().clamp_min(1) - (w_out * s).sum() / w_out.sum().clamp_min(1)

    def moments(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        n = w.sum(0)
        mu = (w * s).sum(0) / n.clamp_min(1)
        var = (w * (s - mu) ** 2).sum(0) / n.clamp_min(1)
        enough = n >= 2
        return mu, var, enough, (var[enough].mean() if enough.any() else None)

    mu_in, var_in, ok_in, pooled_in = moments(w_in)
    mu_out, var_out, ok_out, pooled_out = moments(w_out)
    has_in, has_out = w_in.sum(0) > 0, w_out.sum(0) > 0
    mu_in, mu_out = (
        torch.where(has_in, mu_in, mu_out + gap),
        torch.where(has_out, mu_out, mu_in - gap),
    )
    every = s.var(unbiased=False)
    pooled_in = pooled_in if pooled_in is not None else pooled_out if pooled_out is not None else every
    pooled_out = pooled_out if pooled_out is not None else pooled_in

    def sd(var: torch.Tensor, ok: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        var = pooled.expand_as(var) if fix_variance else torch.where(ok, var, pooled)
        return var.sqrt().clamp_min(1e-6)

    return mu_in, sd(var_in, ok_in, pooled_in), mu_out, sd(var_out, ok_out, pooled_out)


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
    """Augmented queries: each image shifted by whole pixels -> ``(N, A, C, H, W)``.

    Reflect padding fills the uncovered border, as the reference code's shifted queries do. Small
    shifts are label-preserving for any image data (flips are not, e.g. for digits).
    """
    n, c, h, w = images.shape
    p = max(max(abs(dx), abs(dy)) for dx, dy in shifts)
    padded = F.pad(images, (p, p, p, p), mode="reflect") if p > 0 else images
    views = [padded[:, :, p - dy : p - dy + h, p - dx : p - dx + w] for dx, dy in shifts]
    return torch.stack(views, 1)


def make_views(images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """The audit's queries ``(N, A, C, H, W)``: :func:`shifted_views`, and with ``flip`` the same shifts
    of the mirrored image too (the reference code's mirror query; A doubles)."""
    views = shifted_views(images)
    return torch.cat([views, shifted_views(images.flip(-1))], 1) if flip else views


def views_digest(views: torch.Tensor) -> torch.Tensor:
    """8 bytes identifying a query tensor, stored with each shadow's logits so stale logits are never reused."""
    data = views.detach().cpu().contiguous().numpy().tobytes()
    return torch.tensor(list(hashlib.sha256(data).digest()[:8]), dtype=torch.uint8)


# --------------------------------------------------------------------------------------------
# Shadow models and the `audit lira` command
# --------------------------------------------------------------------------------------------
@torch.inference_mode()
def query_views(
    model: torch.nn.Module, views: torch.Tensor, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits ``(N, A, K)`` of ``model`` on augmented views ``(N, A, C, H, W)``."""

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

    Shadow m is ``out_dir/shadow_XXX.safetensors``: its logits, keep row, a digest of the views, its
    training seconds and its weights (``model.*``), written as it finishes, so a killed run loses at
    most one shadow, later audits of other targets (or with more shadows: rows never depend on M)
    reuse them, and new views are answered by the saved weights without retraining. A file whose
    keep row differs is retrained. ``rows`` trains only those shadows (and returns only theirs), so
    separate processes can share the work.
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    digest = views_digest(views)
    ms = range(keep.shape[0]) if rows is None else rows
    return torch.stack(
        [
            _shadow_logits(
                population, keep[m], recipe, m, out_dir / f"shadow_{m:03d}.safetensors", views, digest, device
            )
            for m in tqdm(ms, desc="shadows", disable=not progress)
        ]
    )


def _shadow_logits(
    population, keep_m: torch.Tensor, recipe, m: int, path: Path, views: torch.Tensor, digest, device
) -> torch.Tensor:
    """Shadow ``m``'s logits on ``views`` ``(N, A, K)``: read from ``path`` when it was trained on
    ``keep_m`` and asked these views, answered by its saved weights when only the views are new,
    else trained now and saved."""
    saved = load_tensors(path) if path.exists() else {}
    seed = recipe.seed + 1000 + m
    c = population.images.shape[1]
    build = partial(build_classifier, recipe.preset, population.num_classes, c, recipe.image_size, seed=seed)
    if saved and torch.equal(saved["keep"], keep_m):
        if torch.equal(saved.get("views", torch.zeros(0, dtype=torch.uint8)), digest):
            return saved["logits"]
        weights = {k[len("model.") :]: v for k, v in saved.items() if k.startswith("model.")}
        if weights:  # the same shadow asked new queries: no retraining
            model = build()
            model.load_state_dict(weights)
            logits = query_views(model, views, device)
            atomic_save_tensors(path, {**saved, "logits": logits, "views": digest})
            return logits
    t0 = time.time()
    model = build()
    idx = torch.nonzero(keep_m).squeeze(1)
    train_classifier(
        model, population.images[idx], population.labels[idx], epochs=recipe.epochs, lr=recipe.lr,
        batch_size=recipe.batch_size, weight_decay=recipe.weight_decay, augment=recipe.augment,
        noise=recipe.noise, seed=seed, device=device,
    )  # fmt: skip
    logits = query_views(model, views, device)
    weights = {f"model.{k}": v for k, v in model.state_dict().items()}
    seconds = torch.tensor(time.time() - t0, dtype=torch.float64)
    atomic_save_tensors(
        path, {"logits": logits, "keep": keep_m, "views": digest, "seconds": seconds, **weights}
    )
    return logits


def shadow_seconds(out_dir: Path, num_shadows: int) -> list[float]:
    """Training seconds of shadows ``0 .. num_shadows-1`` as recorded in their files (those that have one)."""

    paths = [out_dir / f"shadow_{m:03d}.safetensors" for m in range(num_shadows)]
    return [float(t["seconds"]) for p in paths if p.exists() and "seconds" in (t := load_tensors(p))]


MIN_MODELS = {"lira": 2, "rmia": 1}  # LiRA online needs an IN and an OUT model per example


def check_num_models(num_models: int, attacks: Sequence[str], hint: str = "") -> None:
    """One-line error when ``num_models`` reference models are too few for one of ``attacks``."""
    names = {"lira": "LiRA", "rmia": "RMIA"}
    for attack in attacks:
        need = MIN_MODELS[attack]
        if num_models < need:
            raise UserError(
                f"{names[attack]} needs at least {need} reference (shadow) model{'s' if need > 1 else ''}, "
                f"got {num_models}: raise --shadows{hint}"
            )


FIXED_VARIANCE_BELOW = 64  # Carlini et al. (Sec. VI-B): a global variance is better with fewer shadows


def headline_variant(num_shadows: int, fix_variance: bool | None = None) -> str:
    """The LiRA variant behind the headline ``auc``: online, with the fixed (global) variance below
    64 shadows and per-example variances from 64 on; ``fix_variance`` True/False overrides."""
    fixed = num_shadows < FIXED_VARIANCE_BELOW if fix_variance is None else fix_variance
    return "online_fixed" if fixed else "online"


@dataclass
class LiraConfig(Runtime):
    """`modelmine audit lira`: which model to audit, on which population, with how many shadows."""

    target: str | None = None  # classifier .safetensors; None trains the default teacher on private digits
    # a built-in dataset (its train split the members, its held-out split the non-members) or an
    # ImageFolder of candidates with a --members file
    population: str = "digits"
    members: str | None = None  # text file of population files (``class/name.png``) the target trained on
    teacher: TeacherConfig = field(default_factory=TeacherConfig)  # target's recipe, reused for shadows
    num_shadows: int = 16
    keep_seed: int = 0
    # headline variance: None = fixed below 64 shadows, per-example from 64 (every variant is reported)
    fix_variance: bool | None = None
    query_flip: bool = False  # also query mirrored images (only where the data is mirror-symmetric)


def check_sources(cfg: LiraConfig) -> None:
    """A target of the user's own needs the files that say who its members are; without a target, the
    default teacher is trained on a built-in population's train split (its members)."""
    if cfg.target is not None and cfg.members is None:
        raise UserError(
            "auditing your own --target needs --population and --members (which files it trained on)"
        )
    if cfg.target is None and not is_builtin(cfg.population):
        raise UserError("a --population folder needs the --target that trained on its --members")


def load_population(cfg: LiraConfig, class_names: list[str] | None = None):
    """``(population ImageSet, is_member (N,) bool)`` for the audit (:func:`modelmine.data.population`).
    ``class_names``: the target's classes in label order, which the population's folders must match."""
    check_sources(cfg)
    return population(cfg.population, cfg.teacher.image_size, cfg.members, class_names)


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


@dataclass
class AuditData:
    """What every membership attack reads: the population, its membership, the reference (shadow)
    models' logits ``(M, N, A, K)`` with their keep masks ``(M, N)`` and the target's ``(N, A, K)``."""

    run: object  # the run folder (modelmine.runs.Run)
    population: object  # ImageSet
    is_member: torch.Tensor
    keep: torch.Tensor
    shadow_logits: torch.Tensor
    target_logits: torch.Tensor
    shadow_seconds: float


def prepare_audit(cfg, out: Path, resumable: tuple[str, ...] = ()) -> AuditData | None:
    """Check the inputs, load (or train) the target, train (or reuse) the shadows with the target's
    recipe, and query everything on the same views. ``cfg`` is a :class:`LiraConfig` or has its
    fields. Returns ``None`` on the helper processes of a launch (they only train shadows).

    Every input check happens before any training, so a mistake never costs trained models.
    """

    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg = resolve_teacher(cfg, cfg.population)
    run_ = Run(out, cfg, resumable=resumable)
    device = resolve_device(cfg.device)
    check_sources(cfg)
    target, info = load_classifier(cfg.target, cfg.teacher.preset) if cfg.target is not None else (None, None)
    external = info is not None and info.preset.startswith(("torchvision:", "timm:"))
    population, is_member = load_population(cfg, None if info is None or external else list(info.class_names))
    keep = keep_masks(cfg.num_shadows, is_member, cfg.keep_seed)
    if target is None:
        with procs.main_first():  # trained once; the other processes load it
            target, info = obtain_teacher(cfg.teacher, run_.dir, None, device, cfg.population)
    resize = f"; pass --set teacher.image_size={info.image_size} to resize it to the target's input"
    check_compatible(info, tuple(population.images.shape[1:]), population.num_classes, "population", resize)
    views = make_views(population.images, cfg.query_flip)
    t0 = time.time()
    shadows = run_.path("shadows")
    if procs.count > 1:  # each process trains shadows index, index + count, ...; the main one scores
        mine = (
            population,
            keep,
            cfg.teacher,
            shadows,
            views,
            device,
            True,
            procs.shard.items(cfg.num_shadows),
        )
        run_phase(procs, [], [Task(train_shadows, mine)])
        if not procs.is_main:
            return None
    shadow_logits = train_shadows(population, keep, cfg.teacher, shadows, views, device)  # all, on disk
    return AuditData(
        run_, population, is_member, keep, shadow_logits, query_views(target, views, device), time.time() - t0
    )


def note_low_fpr(num_nonmembers: int) -> list[float]:
    """The FPRs to report for ``num_nonmembers``, printing (once) why 0.1% is left out, if it is."""

    if note := low_fpr_note(num_nonmembers):
        print(f"modelmine: note: {note}", file=sys.stderr)
    return reported_fprs(num_nonmembers)


def run(cfg: LiraConfig, out: Path) -> dict:
    """Train (or reuse) shadows, score the target, write ROC metrics, scores and ``roc.png``."""

    check_num_models(cfg.num_shadows, ["lira"])
    data = prepare_audit(cfg, out, resumable=("num_shadows", "fix_variance"))
    if data is None:
        return {}
    is_member = data.is_member
    scores = score_target(data.target_logits, data.population.labels, data.shadow_logits, data.keep)
    atomic_save_tensors(data.run.path("scores.safetensors"), {**scores, "is_member": is_member})
    fprs = note_low_fpr(int((~is_member).sum()))
    headline = headline_variant(cfg.num_shadows, cfg.fix_variance)
    metrics: dict = membership_metrics(scores[headline], is_member, "", fprs)
    for name, sc in scores.items():  # every variant, prefixed; the headline also unprefixed
        metrics.update(membership_metrics(sc, is_member, f"{name}_", fprs))
    plot_roc(
        data.run.path("roc.png"),
        {k: roc_curve(v, is_member) for k, v in scores.items()},
        "LiRA on the target",
    )
    return data.run.log_metrics(
        **metrics, num_shadows=cfg.num_shadows, num_members=int(is_member.sum()),
        num_nonmembers=int((~is_member).sum()), shadow_train_size=int(data.keep[0].sum()),
        headline_fixed_variance=int(headline == "online_fixed"), shadow_seconds=data.shadow_seconds,
    )  # fmt: skip
