"""Training-data extraction audits: similarity features, clique clustering, success rate.

The measurement side of FineXtract (Wu et al., 2024, "Leveraging Model Guidance to Extract
Training Data from Personalized Diffusion Models", arXiv:2410.03039; official code ``Cluster.py``
of github.com/Nicholas0228/FineXtract), as pure functions:

1. Features of every generated image (:func:`build_features`), cosine similarity between all
   pairs (:func:`cosine_similarity_matrix`).
2. Similarity graph: images are nodes, an edge joins two images whose similarity is at least a
   threshold (:func:`similarity_graph`). Greedy clique removal (:func:`greedy_cliques`): take
   the largest clique, remove its nodes, repeat; every node ends up in some clique (singletons
   included, the official ``min_clique_size=1``).
3. The threshold starts at the 25% quantile of the pairwise similarities (rounded down to 0.01)
   and rises in steps of 0.01 until the graph splits into at least ``N`` cliques, ``N`` the
   number of training images (:func:`cluster_generations`). The ``N`` largest cliques are the
   clusters, and in each the member nearest the mean feature is the candidate
   (:func:`cluster_representatives`).
4. Scores (:func:`best_matches`, :func:`extraction_scores`): for each training image the
   similarity of its best-matching candidate; average similarity (the paper's AS), the
   extraction success rate ``success_rate``, the fraction of training images whose best match
   is at least a fixed ``similarity_threshold`` (the paper's, 0.7 on SSCD similarity; ours per
   feature, :func:`fixed_threshold`), and ``calibrated_success_rate``, the same fraction at a
   threshold calibrated on real non-members (:func:`calibrate_threshold`).

Defaults (official = ``Cluster.py``; paper = arXiv:2410.03039):

| setting | paper or official code | ours | reason |
|---|---|---|---|
| features | SSCD (``sscd_disc_large``) on images resized to 256 and centre-cropped to 224 | ``"pixels"``: mean-centred, L2-normalised pixels (at most 64 px); ``"sscd:<file>"``: the paper's; ``"dino"``: DINOv2 CLS at 224; ``"torchscript:<file>"``: any | SSCD ships only as TorchScript, which carries code, and needs a download: it runs only from a file the user names; a classifier's penultimate features would make every image of a class alike |
| similarity | cosine | cosine (on ``pixels``: the pixel correlation) | |
| first clustering threshold | 25% quantile of 1,000 random pairwise similarities, floored to 0.01 | 25% quantile of all pairs, floored to 0.01 | deterministic |
| threshold step | +0.01 until at least ``N`` cliques | the same | |
| clique search | all maximal cliques (networkx), the largest removed, repeated; 30 s timeout, then the next threshold | a greedy largest clique (:func:`largest_clique`), removed, repeated | the enumeration is exponential in the worst case; the heuristic is O(n^2) per clique and deterministic |
| smallest clique | 1 (``min_clique_size``) | 1 | official |
| candidates | every clique at the first threshold with at least ``N`` | the ``N`` largest | exactly ``N`` chances to match, as many as training images |
| representative | the member nearest (L2) the clique's mean feature | the same | official |
| AS | mean over training images of the best candidate's distance ``1 - cos`` (reported as similarity) | mean best similarity | the same quantity |
| success rate | best SSCD similarity >= 0.7 | best similarity >= ``similarity_threshold`` (:data:`FIXED_THRESHOLDS`: 0.7 on ``sscd``, the paper's; 0.95 on ``pixels``; 0.7 on ``dino``; none on ``torchscript``) | see below |
| calibrated rate | none | best similarity >= the 99% quantile of real non-members' best similarity | see below |

The fixed thresholds: the paper's 0.7 is an SSCD score. For ``pixels`` (cosine = pixel correlation
``rho``) 0.95 is a candidate that reproduces ``rho^2 >= 90%`` of the training image's pixel variance
up to brightness and contrast; for DINOv2 the paper's 0.7 has no copy-detection calibration behind
it. On small digits distinct real images of one class can correlate above 0.95, so no fixed number
means "the same image" there; hence the second rate (:func:`calibrate_threshold`, not in the
paper): a candidate counts as an extraction when it matches a training image better than 99% of
real images that were not trained on do. Without non-members (and no ``calibrated_threshold``) it
is not reported.

The attack side, shared by ``modelmine extract`` (:mod:`modelmine.methods.finextract`) and
``modelmine audit generator`` (:mod:`modelmine.audit.generator`), takes plain arguments: the start
noise of every generation batch (:func:`start_noise`, the same for every method so they are
compared on equal draws), FineXtract's model-guided samples (:func:`generate_finextract`) and the
CFG baseline's (:func:`generate_cfg`), the resumable batch loop (:func:`generate_all`), the
clustering and scoring of one set of generations (:func:`attack`) and the calibrated threshold's
choice (:func:`choose_calibrated_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel

from ..config import short
from ..data import fit_to, to_uint8_tensor
from ..diffusion.guidance import ModelGuidance
from ..diffusion.sampler import sample
from ..errors import UserError
from ..hub import local_model
from ..runs import Run, item_seed, synthesize_batches

if TYPE_CHECKING:
    from ..diffusion.generator import Generator
    from ..distributed import Shard

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, C, H, W) in [0, 1] -> (B, D)


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------
def pixel_features(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Mean-centred, L2-normalised pixels ``(B, C*size*size)`` of images ``(B, C, H, W)`` in [0, 1]
    (resized to ``size`` first, antialiased), so the cosine similarity is the pixel correlation."""
    x = images.float()
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    x = x.flatten(1)
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def dino_features(
    name: str = "facebook/dinov2-small", device: str | torch.device = "cpu", batch_size: int = 64
) -> FeatureFn:
    """DINOv2 CLS features through transformers (safetensors weights only), ``f(images) -> (B, D)``.

    ``name`` is a local folder or a hub id already in the local Hugging Face cache
    (:func:`~modelmine.hub.local_model`: nothing is downloaded). Images are resized to 224,
    grey images repeated to RGB, ImageNet-normalised.
    """
    try:
        folder = local_model(name, "DINO features")
        model = (
            AutoModel.from_pretrained(folder, use_safetensors=True, local_files_only=True).to(device).eval()
        )
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load DINO features '{name}': {str(e).splitlines()[0]}") from None

    @torch.inference_mode()
    def extract(images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch_size):
            x = _rgb(images[i : i + batch_size])
            x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True).clamp(0, 1)
            h = model(pixel_values=_imagenet_normalize(x).to(device)).last_hidden_state[:, 0]
            out.append(h.float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    return extract


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """Images ``(B, C, H, W)`` as float RGB (grey repeated to three channels)."""
    x = x.float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def sscd_preprocess(images: torch.Tensor, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """SSCD's evaluation input: RGB, the short side resized to ``resize`` (bilinear, antialiased),
    centre-cropped to ``crop``, ImageNet-normalised; ``(B, C, H, W)`` in [0, 1] -> ``(B, 3, crop, crop)``."""
    x = _rgb(images)
    h, w = x.shape[-2:]
    scale = resize / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - crop) // 2, (x.shape[-1] - crop) // 2
    return _imagenet_normalize(x[..., top : top + crop, left : left + crop].clamp(0, 1))


def torchscript_features(
    path: str | Path, device: str | torch.device = "cpu", *, sscd: bool = False, batch_size: int = 64
) -> FeatureFn:
    """A TorchScript feature extractor at ``path``, ``f(images (B, C, H, W) in [0, 1]) -> (B, D)``.

    ``sscd``: the official SSCD descriptor (e.g. ``sscd_disc_large.torchscript.pt``) on
    :func:`sscd_preprocess`'d images. Otherwise the model gets the images as they are and its output
    is flattened per image. A TorchScript archive carries code that runs when it is called, so it is
    read only from a file the user names (``features=sscd:PATH`` or ``torchscript:PATH``).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"feature model not found: {p}")
    try:
        model = torch.jit.load(str(p), map_location=device).eval()
    except (RuntimeError, ValueError, OSError) as e:
        raise UserError(f"cannot load TorchScript features {p}: {str(e).strip().splitlines()[0]}") from None

    @torch.inference_mode()
    def extract(images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].float()
            x = sscd_preprocess(x) if sscd else x
            try:
                h = model(x.to(device))
            except RuntimeError as e:
                raise UserError(f"feature model {p} failed on images {list(x.shape)}: "
                                f"{str(e).strip().splitlines()[0]}") from None  # fmt: skip
            out.append(h.float().flatten(1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    return extract


FEATURES = "pixels, dino, dino:<model>, sscd:<torchscript file> or torchscript:<file>"


def build_features(name: str, size: int | None = None, device: str | torch.device = "cpu") -> FeatureFn:
    """The similarity features named ``name``: ``"pixels"`` (:func:`pixel_features` at ``size``),
    ``"dino"`` or ``"dino:<hub id or folder>"`` (:func:`dino_features`), ``"sscd:<file>"`` (the
    official SSCD TorchScript) or ``"torchscript:<file>"`` (any, :func:`torchscript_features`)."""
    kind, _, arg = name.partition(":")
    if name == "pixels":
        return lambda images: pixel_features(images, size)
    if kind == "dino":
        return dino_features(arg or "facebook/dinov2-small", device)
    if kind in ("sscd", "torchscript") and arg:
        return torchscript_features(arg, device, sscd=kind == "sscd")
    raise UserError(f"unknown similarity features '{short(name)}' (use {FEATURES})")


# ------------------------------------------------------------------------------------------------
# similarity graph and greedy clique clustering
# ------------------------------------------------------------------------------------------------
def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarities ``(N, M)`` between features ``a`` ``(N, D)`` and ``b`` ``(M, D)`` (default ``a``)."""
    a = F.normalize(a.float(), dim=1)
    b = a if b is None else F.normalize(b.float(), dim=1)
    return a @ b.T


def similarity_graph(sim: torch.Tensor, threshold: float) -> np.ndarray:
    """Adjacency ``(n, n)`` bool of ``sim >= threshold`` without self-loops (``sim`` ``(n, n)``)."""
    adj = (sim >= threshold).cpu().numpy()
    np.fill_diagonal(adj, False)
    return adj


def largest_clique(adj: np.ndarray, alive: np.ndarray | None = None) -> list[int]:
    """A large clique among the ``alive`` nodes of ``adj`` ``(n, n)`` bool (greedy, deterministic).

    Peel: repeatedly drop the node with the fewest neighbours among the remaining ones (ties: the
    lowest index) until the remaining nodes form a clique. Grow: try the dropped nodes again, last
    dropped first, adding each one adjacent to every member, so the clique is maximal.
    Returns sorted node indices (empty if no node is alive).
    """
    n = adj.shape[0]
    nodes = np.arange(n) if alive is None else np.flatnonzero(alive)
    if len(nodes) == 0:
        return []
    sub = adj[np.ix_(nodes, nodes)]
    deg = sub.sum(1).astype(np.int64)
    keep = np.ones(len(nodes), dtype=bool)
    big = np.iinfo(np.int64).max
    removed = []
    count = len(nodes)
    while count > 1:
        masked = np.where(keep, deg, big)
        v = int(np.argmin(masked))
        if masked[v] >= count - 1:  # every remaining node touches all others: a clique
            break
        keep[v] = False
        count -= 1
        deg -= sub[v]
        removed.append(v)
    clique = list(np.flatnonzero(keep))
    for v in reversed(removed):
        if sub[v, clique].all():
            clique.append(v)
    return sorted(int(nodes[i]) for i in clique)


def greedy_cliques(adj: np.ndarray, max_cliques: int | None = None) -> list[list[int]]:
    """Greedy largest-clique removal on ``adj`` ``(n, n)``: find the largest clique
    (:func:`largest_clique`), remove its nodes, repeat until no node is left (or ``max_cliques``
    were found). Returns the cliques in the order found (largest first, up to the heuristic)."""
    alive = np.ones(adj.shape[0], dtype=bool)
    cliques: list[list[int]] = []
    while alive.any() and (max_cliques is None or len(cliques) < max_cliques):
        c = largest_clique(adj, alive)
        cliques.append(c)
        alive[c] = False
    return cliques


def cluster_generations(
    sim: torch.Tensor, num_clusters: int, start_quantile: float = 0.25, step: float = 0.01
) -> tuple[list[list[int]], float]:
    """FineXtract's clustering of generated images with pairwise similarities ``sim`` ``(n, n)``.

    The threshold starts at the ``start_quantile`` quantile of the off-diagonal similarities
    (rounded down to a multiple of ``step``) and rises by ``step`` until greedy clique removal
    (:func:`greedy_cliques`) yields ``num_clusters`` cliques. Returns those cliques (largest
    first) and the threshold. Needs ``n >= num_clusters`` (at a threshold above every
    similarity each image is its own clique).
    """
    n = sim.shape[0]
    if num_clusters < 1 or n < num_clusters:
        raise ValueError(f"cannot make {num_clusters} clusters from {n} images")
    if n == 1:
        return [[0]], 1.0
    off = sim[~torch.eye(n, dtype=torch.bool, device=sim.device)].float()
    start = math.floor(float(torch.quantile(off.cpu(), start_quantile)) / step) * step
    top = float(off.max())
    k = 0
    while True:
        threshold = round(start + k * step, 6)
        cliques = greedy_cliques(similarity_graph(sim, threshold), num_clusters)
        if len(cliques) >= num_clusters or threshold > top:
            return cliques, threshold
        k += 1


def cluster_representatives(features: torch.Tensor, cliques: list[list[int]]) -> torch.Tensor:
    """For each clique, the member whose feature ``(D,)`` is nearest (L2) to the clique's mean
    feature: the extraction candidate. ``features`` ``(n, D)``; returns indices ``(K,)``."""
    out = []
    for c in cliques:
        f = features[c].float()
        out.append(c[int((f - f.mean(0)).norm(dim=1).argmin())])
    return torch.tensor(out, dtype=torch.long)


# ------------------------------------------------------------------------------------------------
# scores
# ------------------------------------------------------------------------------------------------
def best_matches(
    train_features: torch.Tensor, candidate_features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each training image ``(N, D)``, the similarity of its best-matching candidate ``(M, D)``
    and that candidate's index: two tensors ``(N,)``."""
    sim = cosine_similarity_matrix(train_features, candidate_features)  # (N, M)
    best, idx = sim.max(1)
    return best, idx


def extraction_scores(
    best_similarity: torch.Tensor, similarity_threshold: float, calibrated_threshold: float | None = None
) -> dict[str, float]:
    """Scores of the training images' best-match similarities ``(N,)``: ``avg_similarity`` (their
    mean, the paper's AS); ``success_rate``, the fraction at least ``similarity_threshold`` (the
    paper's extraction success rate, a fixed threshold); with ``calibrated_threshold``,
    ``calibrated_success_rate``, the fraction at least that one (:func:`calibrate_threshold`)."""
    best = best_similarity.float()
    scores = {
        "avg_similarity": float(best.mean()),
        "success_rate": float((best >= similarity_threshold).float().mean()),
    }
    if calibrated_threshold is not None:
        scores["calibrated_success_rate"] = float((best >= calibrated_threshold).float().mean())
    return scores


def calibrate_threshold(
    train_features: torch.Tensor, nonmember_features: torch.Tensor, quantile: float = 0.99
) -> float:
    """The ``quantile`` quantile of real non-member images' ``(M, D)`` best similarity to the
    training images ``(N, D)``: the success threshold that at most ``1 - quantile`` of images never
    trained on would reach."""
    if len(nonmember_features) == 0:
        raise UserError("threshold calibration needs at least one non-member image")
    best, _ = best_matches(nonmember_features, train_features)
    return float(torch.quantile(best.float(), quantile))


def choose_calibrated_threshold(
    threshold: float | None,
    quantile: float,
    train_features: torch.Tensor,
    nonmember_features: torch.Tensor | None,
) -> float | None:
    """The calibrated threshold: ``threshold`` when given, else :func:`calibrate_threshold` at
    ``quantile`` on the non-members' features ``(M, D)`` against the training images' ``(N, D)``;
    None without either (no calibrated scores)."""
    if threshold is not None:
        return float(threshold)
    if nonmember_features is None:
        return None
    return calibrate_threshold(train_features, nonmember_features, quantile)


# The paper's fixed threshold, on SSCD copy-detection descriptors, and ours per feature (the module
# docstring says what a fixed value means for each)
PAPER_SSCD_THRESHOLD = 0.7
FIXED_THRESHOLDS = {"pixels": 0.95, "dino": PAPER_SSCD_THRESHOLD, "sscd": PAPER_SSCD_THRESHOLD}


def fixed_threshold(features: str) -> float:
    """The default ``similarity_threshold`` for a ``features`` name (``"dino:<model>"`` as ``"dino"``);
    a one-line error for ``torchscript:<file>``, whose similarity scale nobody has calibrated."""
    kind = features.split(":", 1)[0]
    if kind not in FIXED_THRESHOLDS:
        raise UserError(
            f"features '{short(features)}' have no standard similarity threshold: set similarity_threshold"
        )
    return FIXED_THRESHOLDS[kind]


# ------------------------------------------------------------------------------------------------
# FineXtract's generation and attack
# ------------------------------------------------------------------------------------------------
# (w, k) of the official runs per fine-tuning mode (LoRA: guidance 5, fix term 0; DreamBooth: 3,
# -0.02), for latent (Stable Diffusion) generators
PAPER_GUIDANCE = {"lora": (5.0, 0.0), "full": (3.0, -0.02)}
# pixel-space generators fall apart under the paper's w (see modelmine.methods.finextract)
PIXEL_SPACE_W = 1.25


def resolve_guidance(mode: str, w: float | None, k: float | None, pixel_space: bool) -> tuple[float, float]:
    """``(w, k)``: explicit values, else the official ones per ``mode`` (``w`` 1.25 for pixel space)."""
    pw, pk = PAPER_GUIDANCE[mode]
    if w is None:
        w = PIXEL_SPACE_W if pixel_space else pw
    return float(w), float(pk if k is None else k)


def check_generation_settings(
    num_generations: int,
    sample_steps: int,
    gen_batch_size: int,
    calibration_quantile: float,
    similarity_threshold: float | None = None,
) -> None:
    """One-line UserErrors for settings no attack can run with."""
    if num_generations < 1 or sample_steps < 1 or gen_batch_size < 1:
        raise UserError("num_generations, sample_steps and gen_batch_size must be >= 1")
    if not 0.0 <= calibration_quantile <= 1.0:
        raise UserError(f"calibration_quantile must be in [0, 1], got {calibration_quantile}")
    if similarity_threshold is not None and not -1.0 <= similarity_threshold <= 1.0:
        raise UserError(f"similarity_threshold is a cosine similarity in [-1, 1], got {similarity_threshold}")


def start_noise(shape: tuple[int, ...], n: int, seed: int, batch: int) -> torch.Tensor:
    """The start noise ``(n, *shape)`` of generation batch ``batch``: the same for every method."""
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(item_seed(seed, batch)))


def generate_finextract(
    gen: Generator,
    prompts: Sequence[str],
    latents: torch.Tensor,
    steps: int,
    w: float,
    k: float,
    base: Generator | None = None,
) -> torch.Tensor:
    """FineXtract samples ``(B, C, H, W)`` in [0, 1] from ``latents`` ``(B, *gen.latent_shape)``:
    ``gen`` is the fine-tuned generator (its LoRA switched off for ``eps_pre`` when ``base`` is
    None), ``base`` the pretrained one otherwise. No CFG: model guidance replaces it."""

    guidance = ModelGuidance(w, k, base=base, pre_prompt="")
    return sample(gen, list(prompts), steps=steps, cfg=1.0, guidance=[guidance], latents=latents)


def generate_cfg(
    gen: Generator, prompts: Sequence[str], latents: torch.Tensor, steps: int, cfg: float
) -> torch.Tensor:
    """Baseline samples ``(B, C, H, W)`` in [0, 1]: plain classifier-free guidance of ``gen``."""

    return sample(gen, list(prompts), steps=steps, cfg=cfg, latents=latents)


def generate_all(
    run: Run,
    folder: str,
    n: int,
    batch_size: int,
    seed: int,
    shape: tuple[int, ...],
    prompts: Sequence[str],
    make: Callable[[list[str], torch.Tensor], torch.Tensor],
    shard: Shard | None = None,
) -> None:
    """Write ``n`` generations in resumable batches under ``run.dir/folder`` (uint8 ``images``
    ``(B, C, H, W)``, read back with :func:`modelmine.runs.load_generated`). ``make(prompts,
    latents)`` draws one batch from :func:`start_noise`; generation ``i`` uses ``prompts[i % len]``.
    With a ``shard`` of a multi-process launch only its batches are drawn."""

    @torch.inference_mode()  # no attack here takes a gradient through sampling
    def make_batch(i: int) -> dict[str, torch.Tensor]:
        lo, hi = i * batch_size, min(n, (i + 1) * batch_size)
        chunk = [prompts[j % len(prompts)] for j in range(lo, hi)]
        return {"images": to_uint8_tensor(make(chunk, start_noise(shape, hi - lo, seed, i)))}

    synthesize_batches(run, math.ceil(n / batch_size), make_batch, folder=folder, shard=shard)


def attack(
    features_fn: FeatureFn,
    generated: torch.Tensor,
    train_features: torch.Tensor,
    similarity_threshold: float,
    calibrated_threshold: float | None = None,
) -> dict:
    """Cluster ``generated`` (uint8 ``(M, C, H, W)``) into ``N = len(train_features)`` candidates
    (all of them when ``M <= N``: clustering would only drop some) and score them. Returns the
    ``scores`` (:func:`extraction_scores` at both thresholds), the ``candidates`` indices ``(K,)``,
    each training image's ``best`` similarity ``(N,)`` and ``best_index`` ``(N,)`` into
    ``generated``, and the ``cluster_threshold``."""
    feats = features_fn(generated.float() / 255)  # (M, D)
    n_train = len(train_features)
    if len(feats) <= n_train:
        candidates, cluster_threshold = torch.arange(len(feats)), float("nan")
    else:
        cliques, cluster_threshold = cluster_generations(cosine_similarity_matrix(feats), n_train)
        candidates = cluster_representatives(feats, cliques)
    best, idx = best_matches(train_features, feats[candidates])
    return {
        "scores": extraction_scores(best, similarity_threshold, calibrated_threshold),
        "candidates": candidates,
        "best": best,
        "best_index": candidates[idx],
        "cluster_threshold": cluster_threshold,
    }


def match_rows(train_images: torch.Tensor, generated: torch.Tensor, best_index: torch.Tensor) -> torch.Tensor:
    """Each training image's ``(N, C, H, W)`` best candidate from ``generated`` (uint8), in [0, 1]
    at the training images' size and channels: a row of a matches grid."""
    return fit_to(generated[best_index].float() / 255, train_images.shape[-1], train_images.shape[1])
