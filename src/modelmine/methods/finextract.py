"""FineXtract: extract the fine-tuning images of a personalised text-to-image diffusion model.

X. Wu, J. Zhang, S. Wu, "Leveraging Model Guidance to Extract Training Data from Personalized
Diffusion Models" (arXiv:2410.03039; official code: github.com/Nicholas0228/FineXtract).

Model guidance (:func:`modelmine.diffusion.guidance.model_guidance_eps`): the
fine-tuned distribution is treated as an interpolation between the pretrained model's and the
fine-tuning data's, so extrapolating from the pretrained model toward the fine-tuned one moves
samples toward the fine-tuning images. Every DDIM step uses

    eps = eps_pre(x_t, empty) + w * (eps_ft(x_t, c) - eps_pre(x_t, empty)) + lambda * eps_pre(x_t, empty)

with ``c`` the instance prompt the model was fine-tuned with, ``eps_pre`` the pretrained model on
the empty prompt and ``eps_ft`` the fine-tuned model, both without classifier-free guidance: two
UNet evaluations per step. For a LoRA, both come from ONE UNet whose adapter is switched off for
``eps_pre``; for full (DreamBooth) fine-tuning from two generators
(:class:`modelmine.diffusion.guidance.ModelGuidance`). Then the generations are clustered
(similarity graph, greedy largest-clique removal, threshold raised until ``N`` cliques; the
member nearest each clique's mean is a candidate) and scored against the training images
(:mod:`modelmine.audit.extraction`: average best-match similarity, extraction success rate).
The baseline is plain classifier-free guidance of the fine-tuned model from the same start
noise, with the same clustering and scoring.

Defaults and where they come from:

- Paper / official ``Generator.py`` + ``contrasted_sample.py``: DreamBooth ``w = 3``,
  ``lambda = -0.02``; LoRA ``w = 5``, ``lambda = 0``; 50 DDIM steps (eta 0); 500 generations
  (100 x 5) from one instance prompt; baseline CFG scale 3.0 (for both modes). These are the
  defaults for latent (Stable Diffusion) generators.
- Official ``Trainer.py``: N = 10 images, 200 steps per image at batch 1 (DreamBooth lr 2e-6,
  no prior preservation, UNet only; LoRA rank 64, lr 1e-4).
- Official ``Cluster.py``: threshold from the 25% quantile up in steps of 0.01, clique size >= 1,
  candidate = member nearest the mean SSCD feature; scores on SSCD similarity.

The embedded default (``modelmine extract`` with no model arguments): the embedded pixel-space
generator is fine-tuned here on ``N = 10`` private digits of one class (``train_class``, the
first 10 of the private train split) with the instance prompt ``"a photo of digit three"``,
once with LoRA and once fully (``modes``), then both are attacked. Deviations, each measured on
this default (20-60 generations per setting, 1 thread; a train image counts as extracted when
its best match beats 99% of real non-member digits of the class, threshold 0.976):

- Fine-tuning: batch 10, LoRA rank 8 on attention, ResNet convolutions and conditioning
  projections (:data:`EXTRACT_LORA_TARGETS`; attention-only LoRA hardly moves this UNet), 400
  steps at lr 3e-3; full fine-tuning 300 steps at lr 1e-4. Each image is seen ~400 / ~300 times
  (official: 200). After 200 LoRA steps at lr 1e-3 no method extracted anything (best-match
  similarity 0.93-0.95 for CFG 1-3 and FineXtract w 1.25-2).
- Guidance scale: ``w = 1.25`` (``lambda`` as in the paper) for pixel-space generators. The
  embedded model samples at CFG 1.5 (Stable Diffusion at 7.5) and degrades quickly with more
  guidance: with the paper's ``w = 5`` (LoRA) every sample is grey noise (average similarity
  0.58 vs 0.93 for CFG 3); ``w = 3``: 0.87, ``w = 2``: 0.92 (LoRA), and DreamBooth ``w = 3,
  lambda = -0.02``: 0.84. Clamping x0 and recomputing eps (the official ``dt`` option) removes the
  noise but collapses all samples onto one over-thick digit; guiding only below t = 300/500
  does not help either. ``w`` in 1.1-1.25 is the best found: on 20 generations from the LoRA
  (400 steps), success over all generations 0.4 (CFG 3: 0.2, CFG 1.5: 0.5), after clustering
  0.3-0.4 (CFG 3: 0.1, CFG 1.5: 0.3); on 60 generations after clustering 0.1-0.2 (CFG 3: 0.1,
  CFG 1.5: 0.5). FineXtract's extrapolation does not beat CFG at the model's own scale here;
  ``extra_baseline_cfgs`` reports other baseline scales from the same start noise.
- Similarity: mean-centred pixels, threshold calibrated on real non-members
  (:mod:`modelmine.audit.extraction`), instead of SSCD at a fixed threshold.

Cost (measured at 1 thread per process on this project's 2-core machine while it was shared with
another job, so upper bounds): one UNet evaluation of the embedded model takes ~4 ms per image at
batch 100, so 500 generations x 50 DDIM steps x 2 evaluations are ~200 s for FineXtract and
~210 s for the CFG baseline (both halves batched in one call); fine-tuning takes ~0.2 s per step
(LoRA 400 steps ~80 s, full 300 steps ~55 s). With ``workers = 2`` (one process per mode) the
embedded default is ~500 s (~8 min) end to end, ~700 s with one extra baseline scale; the
clustering and scoring take seconds.

``modelmine audit generator --run TCKR_RUN`` runs the same attack on the LoRA a TCKR run
produced (:func:`run_audit_generator`), prompted with TCKR's own training prompts (cycled in a
seeded order), and reports how many private training images it leaks. With more private images
than generations (1,077 vs 500 by default) every generation is a candidate (clustering would
only throw candidates away), so ``leaked_images`` is the owner's worst case for this budget.
Cost: ~410 s for FineXtract and the baseline in one process.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..errors import UserError

# The diffusers LoRA targets plus the UNet's convolutional and conditioning projections.
EXTRACT_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "time_emb_proj", "proj_in", "proj_out",
    "add_embedding.proj",
)  # fmt: skip
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# (w, lambda): the paper's for latent generators, measured ones for pixel-space generators.
PAPER_GUIDANCE = {"lora": (5.0, 0.0), "full": (3.0, -0.02)}
PIXEL_SPACE_W = 1.25
EMBEDDED_PROMPT = "a photo of digit {c}"


@dataclass
class ModeConfig:
    """One fine-tuning mode of the embedded default, and the guidance used to attack it."""

    w: float | None = None  # None: 5 (LoRA) / 3 (full) as in the paper; 1.25 for pixel-space generators
    lam: float | None = None  # None: 0 (LoRA) / -0.02 (full), as in the paper
    steps: int = 400
    lr: float = 3e-3
    batch_size: int = 10
    rank: int = 8  # LoRA only
    alpha: float = 8.0  # LoRA only


@dataclass
class ExtractConfig:
    """`modelmine extract`: FineXtract and its CFG baseline on a (pretrained, fine-tuned) pair."""

    base: str = "embedded"  # pretrained generator: "embedded", an embedded .safetensors, a diffusers folder
    # the audited model: a LoRA (.safetensors / folder) or a fully fine-tuned generator (diffusers
    # folder, embedded .safetensors); None: fine-tune `base` here on `data` in every mode of `modes`
    finetuned: str | None = None
    data: str | None = None  # the fine-tuning images (ImageFolder); default: private digits of train_class
    heldout_data: str | None = None  # real non-members (ImageFolder) to calibrate the success threshold
    prompt: str | None = None  # the instance prompt; default "a photo of digit {c}" ({c}: class name)
    train_class: int = 3  # embedded default: the digit class of the fine-tuning images
    num_train_images: int = 10  # embedded default: N
    modes: list[str] = field(default_factory=lambda: ["lora", "full"])  # when fine-tuning here
    lora: ModeConfig = field(default_factory=ModeConfig)
    full: ModeConfig = field(default_factory=lambda: ModeConfig(steps=300, lr=1e-4))
    lora_targets: list[str] = field(default_factory=lambda: list(EXTRACT_LORA_TARGETS))
    num_generations: int = 500
    sample_steps: int = 50  # DDIM steps
    baseline_cfg: float = 3.0  # the official baseline's CFG scale
    extra_baseline_cfgs: list[float] = field(default_factory=list)  # more baselines, same noise
    gen_batch_size: int = 100
    features: str = "pixels"  # pixels, dino, dino:<model>
    success_threshold: float | None = None  # None: calibrated on real non-members
    calibration_quantile: float = 0.99
    seed: int = 0
    workers: int = 2  # processes (one per mode)
    threads: int = 1  # torch threads per process
    device: str = "auto"


@dataclass
class AuditGeneratorConfig:
    """`modelmine audit generator`: FineXtract on the LoRA generator of a TCKR run."""

    run: str | None = None  # the TCKR run folder
    w: float | None = None  # None: 5 (paper, LoRA); 1.25 for pixel-space generators
    lam: float = 0.0
    num_generations: int = 500
    sample_steps: int = 50
    baseline_cfg: float = 3.0
    gen_batch_size: int = 100
    features: str = "pixels"
    success_threshold: float | None = None  # None: calibrated on the run's held-out images
    calibration_quantile: float = 0.99
    seed: int = 0
    threads: int = 1
    device: str = "auto"


# ------------------------------------------------------------------------------------------------
# checkpoints (safetensors only)
# ------------------------------------------------------------------------------------------------
def refuse_pickle(path: str | Path, what: str = "checkpoint") -> None:
    """A one-line UserError for a pickle file, or a folder that holds pickle weights but no safetensors."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"{what} {p} is a pickle file; only safetensors are loaded (convert it, e.g. with "
            "safetensors.torch.save_file)"
        )
    if p.is_dir():
        for sub in (p, p / "unet", p / "text_encoder", p / "vae"):
            if not sub.is_dir():
                continue
            pickles = [f for f in sub.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES]
            if pickles and not any(f.suffix == ".safetensors" for f in sub.iterdir()):
                raise UserError(
                    f"{what} {sub} holds only pickle weights ({pickles[0].name}); only safetensors are loaded"
                )


def checkpoint_kind(path: str | Path) -> Literal["lora", "full"]:
    """``"lora"`` for a diffusers LoRA (folder with ``pytorch_lora_weights.safetensors`` or a
    ``.safetensors`` of LoRA weights), ``"full"`` for a diffusers folder or an embedded
    ``.safetensors`` generator. Pickles are refused."""
    from ..diffusion.finetune import LORA_WEIGHTS

    p = Path(path)
    refuse_pickle(p, "fine-tuned checkpoint")
    if not p.exists():
        raise UserError(f"fine-tuned checkpoint not found: {p}")
    if p.is_dir():
        if (p / LORA_WEIGHTS).is_file():
            return "lora"
        if (p / "unet").is_dir():
            return "full"
        raise UserError(f"{p} is neither a LoRA folder ({LORA_WEIGHTS}) nor a diffusers folder (unet/)")
    if p.suffix != ".safetensors":
        raise UserError(f"fine-tuned checkpoint {p} must be .safetensors or a diffusers folder")
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # safetensors raises several types for bad headers
        raise UserError(f"cannot read safetensors file {p}: {e}") from None
    return "lora" if any("lora" in k for k in keys) else "full"


def load_generator(path: str, device: torch.device):
    """:meth:`Generator.from_pretrained` after refusing pickle weights."""
    from ..diffusion.generator import Generator

    if path != "embedded":
        refuse_pickle(path, "generator")
    return Generator.from_pretrained(path).to(device).eval()


def resolve_guidance(mode: str, w: float | None, lam: float | None, pixel_space: bool) -> tuple[float, float]:
    """``(w, lambda)``: explicit values, else the paper's per mode (``w`` 1.25 for pixel space)."""
    pw, plam = PAPER_GUIDANCE[mode]
    if w is None:
        w = PIXEL_SPACE_W if pixel_space else pw
    return float(w), float(plam if lam is None else lam)


# ------------------------------------------------------------------------------------------------
# generation
# ------------------------------------------------------------------------------------------------
def start_noise(shape: tuple[int, ...], n: int, seed: int, batch: int) -> torch.Tensor:
    """The start noise ``(n, *shape)`` of generation batch ``batch``: the same for every method."""
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed * 1_000_003 + batch))


def generate_finextract(
    gen, prompts: list[str], latents: torch.Tensor, steps: int, w: float, lam: float, base=None
):
    """FineXtract samples ``(B, C, H, W)`` in [0, 1]: ``gen`` is the fine-tuned generator (its LoRA
    switched off for ``eps_pre`` when ``base`` is None), ``base`` the pretrained one otherwise."""
    from ..diffusion.guidance import ModelGuidance
    from ..diffusion.sampler import sample

    guidance = ModelGuidance(w, lam, base=base, pre_prompt="")
    with torch.inference_mode():
        return sample(gen, prompts, steps=steps, cfg=1.0, guidance=[guidance], latents=latents)


def generate_cfg(gen, prompts: list[str], latents: torch.Tensor, steps: int, cfg: float):
    """Baseline samples ``(B, C, H, W)`` in [0, 1]: plain classifier-free guidance of ``gen``."""
    from ..diffusion.sampler import sample

    with torch.inference_mode():
        return sample(gen, prompts, steps=steps, cfg=cfg, latents=latents)


def quantize_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in [0, 1] as uint8 (what is stored: 8-bit, like a PNG)."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def generate_all(
    run_, folder: str, n: int, batch_size: int, seed: int, shape, prompts: list[str], make, shard=None
) -> torch.Tensor | None:
    """``n`` images (uint8 ``(n, C, H, W)``) in resumable batches under ``run_.dir/folder``;
    ``make(prompts, latents)`` draws one batch; generation ``i`` uses ``prompts[i % len]``. With a
    ``shard`` of a multi-process launch only its batches are drawn and ``None`` is returned."""
    from ..runs import synthesize_batches

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        lo, hi = i * batch_size, min(n, (i + 1) * batch_size)
        chunk = [prompts[j % len(prompts)] for j in range(lo, hi)]
        return {"images": quantize_uint8(make(chunk, start_noise(shape, hi - lo, seed, i)))}

    batches = synthesize_batches(run_, math.ceil(n / batch_size), make_batch, folder=folder, shard=shard)
    return None if batches is None else torch.cat([b["images"] for b in batches])[:n]


def generation_seconds(run_dir: Path, folder: str) -> float:
    from ..runs import load_tensors

    return sum(
        float(load_tensors(f)["seconds"]) for f in sorted((run_dir / folder).glob("batch_*.safetensors"))
    )


# ------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------
def attack(features_fn, generated: torch.Tensor, train_features: torch.Tensor, threshold: float) -> dict:
    """Cluster ``generated`` (uint8 ``(M, C, H, W)``) into ``N = len(train_features)`` candidates
    (all of them when ``M <= N``) and score them. Returns the scores, the candidate indices
    ``(K,)``, each training image's best similarity ``(N,)`` and best candidate index ``(N,)``."""
    from ..audit.extraction import (
        best_matches,
        cluster_generations,
        cluster_representatives,
        cosine_similarity_matrix,
        extraction_scores,
    )

    feats = features_fn(generated.float() / 255)  # (M, D)
    n_train = len(train_features)
    if len(feats) <= n_train:
        candidates, cluster_threshold = torch.arange(len(feats)), float("nan")
    else:
        cliques, cluster_threshold = cluster_generations(cosine_similarity_matrix(feats), n_train)
        candidates = cluster_representatives(feats, cliques)
    best, idx = best_matches(train_features, feats[candidates])
    return {
        "scores": extraction_scores(best, threshold),
        "candidates": candidates,
        "best": best,
        "best_index": candidates[idx],
        "cluster_threshold": cluster_threshold,
    }


def match_rows(train_images: torch.Tensor, generated: torch.Tensor, best_index: torch.Tensor) -> torch.Tensor:
    """Each training image's best candidate ``(N, C, H, W)`` in [0, 1], at the training images' size."""
    import torch.nn.functional as F

    x = generated[best_index].float() / 255
    if x.shape[1] != train_images.shape[1]:
        x = x.mean(1, keepdim=True).expand(-1, train_images.shape[1], -1, -1)
    if x.shape[-1] != train_images.shape[-1]:
        x = F.interpolate(x, size=train_images.shape[-2:], mode="bilinear", antialias=True)
    return x.clamp(0, 1)


def _threshold(cfg, train_features: torch.Tensor, nonmember_features: torch.Tensor | None) -> float:
    from ..audit.extraction import calibrate_threshold

    if cfg.success_threshold is not None:
        return float(cfg.success_threshold)
    if nonmember_features is None:
        raise UserError("set success_threshold, or give heldout_data (real non-members) to calibrate it")
    return calibrate_threshold(train_features, nonmember_features, cfg.calibration_quantile)


# ------------------------------------------------------------------------------------------------
# `modelmine extract`
# ------------------------------------------------------------------------------------------------
def load_train_data(cfg: ExtractConfig, size: int, channels: int):
    """The fine-tuning images ``(N, C, H, W)``, their instance prompt and the real non-members
    ``(M, C, H, W)`` (``heldout_data``; None without it). Embedded default: the first N private
    digits of ``train_class``; non-members all other private digits of that class."""
    from ..data import load_digits, load_image_folder

    if cfg.prompt is not None and not cfg.prompt.strip():
        raise UserError("--prompt is empty; give the instance prompt the model was fine-tuned with")
    if cfg.data is None:
        if not 0 <= cfg.train_class <= 9:
            raise UserError(f"train_class must be a digit 0-9, got {cfg.train_class}")
        sets = {s: load_digits(s, size) for s in ("train", "heldout", "test")}
        of_class = {s: d.images[d.labels == cfg.train_class] for s, d in sets.items()}
        n = cfg.num_train_images
        if not 1 <= n < len(of_class["train"]):
            raise UserError(f"num_train_images must be in 1..{len(of_class['train']) - 1}, got {n}")
        images = of_class["train"][:n]
        nonmembers = torch.cat([of_class["train"][n:], of_class["heldout"], of_class["test"]])
        if channels != 1:
            images, nonmembers = (x.expand(-1, channels, -1, -1) for x in (images, nonmembers))
        prompt = (cfg.prompt or EMBEDDED_PROMPT).replace("{c}", sets["train"].class_names[cfg.train_class])
    else:
        data = load_image_folder(cfg.data, size=size, channels=channels)
        if len(data) == 0:
            raise UserError(f"{cfg.data} holds no images")
        if cfg.prompt is None:
            raise UserError("give the instance prompt the model was fine-tuned with: --prompt '...'")
        images, prompt, nonmembers = data.images, cfg.prompt, None
    if cfg.heldout_data is not None:
        nonmembers = load_image_folder(cfg.heldout_data, size=size, channels=channels).images
    return images, prompt, nonmembers


def _check_common(cfg: ExtractConfig | AuditGeneratorConfig) -> None:
    if cfg.num_generations < 1 or cfg.sample_steps < 1 or cfg.gen_batch_size < 1:
        raise UserError("num_generations, sample_steps and gen_batch_size must be >= 1")
    if not 0.0 <= cfg.calibration_quantile <= 1.0:
        raise UserError(f"calibration_quantile must be in [0, 1], got {cfg.calibration_quantile}")


def _check(cfg: ExtractConfig) -> list[str]:
    """Validate the config; returns the modes to run."""
    _check_common(cfg)
    if cfg.workers < 1:
        raise UserError(f"workers must be >= 1, got {cfg.workers}")
    if cfg.finetuned is not None:
        kind = checkpoint_kind(cfg.finetuned)
        if cfg.data is None:
            raise UserError(
                "give the fine-tuning images with --data to score the extraction from --finetuned"
            )
        return [kind]
    if not cfg.modes or any(m not in ("lora", "full") for m in cfg.modes):
        raise UserError(f"modes must be a non-empty list of lora/full, got {cfg.modes}")
    return list(dict.fromkeys(cfg.modes))


def _finetuned_generator(cfg: ExtractConfig, out: Path, mode: str, base, images, prompt, device):
    """The fine-tuned generator of ``mode``: loaded from ``cfg.finetuned``, or fine-tuned here on
    ``images`` (saved under ``out/<mode>/``, resumable). LoRA: ``base`` itself with the adapter on."""
    import copy

    from ..diffusion.finetune import LORA_WEIGHTS, add_lora, load_lora, save_lora, train_unet
    from ..runs import atomic_write_text

    if cfg.finetuned is not None:
        if mode == "lora":
            refuse_pickle(cfg.finetuned, "LoRA")
            load_lora(base, cfg.finetuned)
            return base.eval()
        return load_generator(cfg.finetuned, device)
    mcfg = cfg.lora if mode == "lora" else cfg.full
    folder = out / mode
    info_path = folder / "train_info.json"
    if mode == "lora":
        if (folder / LORA_WEIGHTS).exists():
            load_lora(base, folder)
            return base.eval()
        base.requires_grad_(False)
        params = add_lora(base.unet, mcfg.rank, mcfg.alpha, cfg.lora_targets, seed=cfg.seed)
        ft = base
    else:
        saved = folder / "embedded_generator.safetensors" if base.vae is None else folder / "generator"
        if saved.exists():
            return load_generator(str(saved), device)
        ft = copy.deepcopy(base)
        ft.requires_grad_(False)
        ft.unet.requires_grad_(True)
        params = list(ft.unet.parameters())
    info = train_unet(
        ft, params, images, [prompt] * len(images), steps=mcfg.steps, batch_size=mcfg.batch_size,
        lr=mcfg.lr, seed=cfg.seed, checkpoint=folder / "checkpoint.pt", device=device,
    )  # fmt: skip
    ft.requires_grad_(False)
    if mode == "lora":
        save_lora(ft.unet, folder)
    elif ft.vae is None:
        ft.save_embedded(saved, extra={"finetuned_from": cfg.base})
    else:
        ft.save_pretrained(saved)
    atomic_write_text(info_path, json.dumps(info))
    return ft.eval()


def task_mode(cfg: ExtractConfig, out: str, mode: str, shard=None, generate: bool = True) -> None:
    """Fine-tune (or load) the ``mode`` model and write its FineXtract and baseline generations
    under ``out/<mode>/`` (resumable batches; only ``shard``'s when given; none without ``generate``)."""
    from ..distributed import resolve_device
    from ..runs import Run

    torch.manual_seed(cfg.seed)
    run_ = Run(out)
    device = resolve_device(cfg.device)
    base = load_generator(cfg.base, device)
    images, prompt, _ = load_train_data(cfg, base.image_size, base.channels)
    ft = _finetuned_generator(cfg, run_.dir, mode, base, images, prompt, device)
    if not generate:
        return
    mcfg = cfg.lora if mode == "lora" else cfg.full
    w, lam = resolve_guidance(mode, mcfg.w, mcfg.lam, ft.vae is None)
    pre = None if mode == "lora" else base
    if pre is not None and pre.latent_shape != ft.latent_shape:
        raise UserError(
            f"base and fine-tuned generators differ in shape: {pre.latent_shape} vs {ft.latent_shape}"
        )
    shape = ft.latent_shape
    common = (cfg.num_generations, cfg.gen_batch_size, cfg.seed, shape, [prompt])
    generate_all(
        run_, f"{mode}/finextract", *common,
        lambda p, z: generate_finextract(ft, p, z, cfg.sample_steps, w, lam, base=pre), shard,
    )  # fmt: skip
    for s in [cfg.baseline_cfg, *cfg.extra_baseline_cfgs]:
        generate_all(
            run_, f"{mode}/cfg_{s:g}", *common,
            lambda p, z, s=s: generate_cfg(ft, p, z, cfg.sample_steps, s), shard,
        )  # fmt: skip


def run(cfg: ExtractConfig, out: Path) -> dict:
    """FineXtract and the CFG baseline on every mode; writes ``metrics.json``, ``matches.png``
    (per mode three rows: training images, FineXtract's and the baseline's best candidates) and
    ``<mode>/candidates.safetensors``.

    Metrics: ``success_rate``, ``avg_similarity``, ``baseline_success_rate``,
    ``baseline_avg_similarity`` (means over the modes), the same prefixed by the mode
    (``lora_``, ``full_``), ``baseline_cfg<s>_*`` for extra baseline scales,
    ``success_threshold``, ``num_generations`` (per method and mode), ``num_train_images``,
    ``seconds``.
    """
    from ..audit.extraction import build_features
    from ..distributed import processes, resolve_device
    from ..report import save_grid
    from ..runs import Run, atomic_save_tensors, run_tasks

    t0 = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    modes = _check(cfg)
    if cfg.base != "embedded":
        refuse_pickle(cfg.base, "base generator")
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    # the training images at the generator's size, without loading the generator in this process
    size, channels = _generator_geometry(cfg.base)
    images, _, nonmembers = load_train_data(cfg, size, channels)
    if cfg.num_generations < len(images):
        raise UserError(
            f"num_generations ({cfg.num_generations}) must be >= the {len(images)} training images"
        )
    # features and threshold first: a bad feature name or a missing calibration set fails before any work
    features = build_features(cfg.features, min(size, 64), device)
    train_feats = features(images)
    threshold = _threshold(cfg, train_feats, None if nonmembers is None else features(nonmembers))
    o = str(run_.dir)
    if procs.count == 1:
        run_tasks([(task_mode, (cfg, o, m)) for m in modes], cfg.workers, cfg.threads)
    else:  # fine-tune once (main process), then every process draws its share of the batches
        if procs.is_main:
            run_tasks([(task_mode, (cfg, o, m, None, False)) for m in modes], cfg.workers, cfg.threads)
        procs.barrier()
        run_tasks([(task_mode, (cfg, o, m, procs.shard)) for m in modes], cfg.workers, cfg.threads)
        procs.barrier()
        if not procs.is_main:  # the main process clusters and scores
            return {}

    metrics: dict[str, float] = {}
    rows = []
    baselines = {"baseline": cfg.baseline_cfg} | {f"baseline_cfg{s:g}": s for s in cfg.extra_baseline_cfgs}
    for mode in modes:
        methods = {"finextract": f"{mode}/finextract"} | {
            k: f"{mode}/cfg_{s:g}" for k, s in baselines.items()
        }
        rows.append(images)
        saved = {}
        for name, folder in methods.items():
            generated = _load_generated(run_.dir, folder, cfg.num_generations)
            res = attack(features, generated, train_feats, threshold)
            prefix = f"{mode}_" + ("" if name == "finextract" else f"{name}_")
            metrics |= {prefix + k: v for k, v in res["scores"].items()}
            metrics[prefix + "seconds"] = generation_seconds(run_.dir, folder)
            if name in ("finextract", "baseline"):
                rows.append(match_rows(images, generated, res["best_index"]))
            saved |= {f"{name}_best": res["best"], f"{name}_candidates": generated[res["candidates"]]}
        atomic_save_tensors(run_.path(mode, "candidates.safetensors"), saved)
        info_path = run_.dir / mode / "train_info.json"
        if info_path.exists():
            metrics[f"{mode}_train_seconds"] = json.loads(info_path.read_text())["train_seconds"]
    save_grid(run_.path("matches.png"), torch.cat(rows), nrow=len(images))
    for key in ["success_rate", "avg_similarity"]:
        metrics[key] = sum(metrics[f"{m}_{key}"] for m in modes) / len(modes)
        for name in baselines:
            metrics[f"{name}_{key}"] = sum(metrics[f"{m}_{name}_{key}"] for m in modes) / len(modes)
    return run_.log_metrics(
        **metrics, success_threshold=threshold, num_generations=cfg.num_generations,
        num_train_images=len(images), seconds=time.time() - t0,
    )  # fmt: skip


def _generator_geometry(base: str) -> tuple[int, int]:
    """``(image_size, channels)`` of a generator, read from its config files (as
    :meth:`Generator.from_pretrained` derives them) without loading its weights."""
    from ..diffusion.generator import EMBEDDED_CONFIG

    if base == "embedded" or base.endswith(".safetensors"):
        p = EMBEDDED_CONFIG if base == "embedded" else Path(base).with_suffix(".json")
        if not p.is_file():
            raise UserError(f"embedded generator config missing: {p}")
        c = json.loads(p.read_text())
        return int(c["image_size"]), int(c["channels"])
    root = Path(base)
    try:
        unet = json.loads((root / "unet" / "config.json").read_text())
        vae = json.loads((root / "vae" / "config.json").read_text()) if (root / "vae").is_dir() else None
    except (OSError, ValueError):
        gen = load_generator(base, torch.device("cpu"))  # e.g. a hub id: let diffusers resolve it
        return gen.image_size, gen.channels
    size = unet["sample_size"] if isinstance(unet["sample_size"], int) else unet["sample_size"][0]
    if vae is None:
        return int(size), int(unet["in_channels"])
    return int(size) * 2 ** (len(vae["block_out_channels"]) - 1), int(vae["in_channels"])


def _load_generated(run_dir: Path, folder: str, n: int) -> torch.Tensor:
    from ..runs import load_tensors

    files = sorted((run_dir / folder).glob("batch_*.safetensors"))
    images = torch.cat([load_tensors(f)["images"] for f in files]) if files else torch.zeros(0)
    if len(images) < n:
        raise UserError(f"{run_dir / folder} holds {len(images)} generations, {n} needed; delete it")
    return images[:n]


# ------------------------------------------------------------------------------------------------
# `modelmine audit generator`
# ------------------------------------------------------------------------------------------------
def read_tckr_config(run_dir: Path) -> dict:
    """A TCKR run's ``config.yaml`` (``yaml.safe_load``); it must have ``generator`` and ``data``."""
    import yaml

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir} is not a TCKR run folder (no config.yaml)")
    try:
        tcfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{cfg_path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(tcfg, dict) or "generator" not in tcfg or "data" not in tcfg:
        raise UserError(f"{cfg_path} is not a TCKR config (needs generator: and data: keys)")
    return tcfg


def load_tckr_run(run_dir: Path, tcfg: dict, size: int, channels: int):
    """A TCKR run's private training images ``(N, C, H, W)``, labels ``(N,)``, training prompts
    ``"<class>: <caption>"`` and real non-members ``(M, C, H, W)`` of the same classes (its held-out
    split), from its config and ``captions.json`` (TCKR's data loading, re-read, not imported)."""
    from ..captioning import tckr_prompts
    from ..data import load_digits, load_image_folder, read_caption_list

    if tcfg["data"] is None:
        train, heldout = load_digits("train", size), load_digits("heldout", size)
        if channels != 1:
            train.images, heldout.images = (
                x.expand(-1, channels, -1, -1) for x in (train.images, heldout.images)
            )
    else:
        train = load_image_folder(tcfg["data"], size=size, channels=channels)
        if tcfg.get("test_data") is None:  # TCKR holds out 20% of --data (seeded) as its test split
            perm = torch.randperm(
                len(train), generator=torch.Generator().manual_seed(int(tcfg.get("seed", 0)))
            )
            n_test = max(1, len(train) // 5)
            train, heldout = train.subset(perm[n_test:]), train.subset(perm[:n_test])
        else:
            heldout = load_image_folder(tcfg["test_data"], size=size, channels=channels)
        if tcfg.get("heldout_data") is not None:
            heldout = load_image_folder(tcfg["heldout_data"], size=size, channels=channels)
    captions_path = run_dir / "captions.json"
    if captions_path.is_file():
        captions = read_caption_list(captions_path)
    elif train.captions is not None:
        captions = list(train.captions)
    else:
        raise UserError(f"{run_dir} has no captions.json")
    if len(captions) != len(train):
        raise UserError(f"{captions_path} has {len(captions)} captions for {len(train)} private images")
    prompts = tckr_prompts(train.class_names, train.labels, captions)
    keep = torch.isin(heldout.labels, train.labels.unique())
    return train.images, train.labels, prompts, heldout.images[keep]


def run_audit_generator(cfg: AuditGeneratorConfig, out: Path) -> dict:
    """FineXtract (and the CFG baseline) on ``cfg.run/lora_caption``: how many private training
    images the TCKR generator leaks. Candidates: ``N`` clusters, or every generation when there
    are no more generations than private images. Writes ``metrics.json`` (``leaked_images``,
    ``success_rate``, ``avg_similarity``, ``baseline_*``, ``success_threshold``,
    ``num_generations``, ``num_train_images``) and ``leaks.png`` (the 32 best-matched private
    images over their FineXtract and baseline matches)."""
    import random

    from ..audit.extraction import build_features
    from ..diffusion.finetune import LORA_WEIGHTS, load_lora
    from ..distributed import processes, resolve_device
    from ..report import save_grid
    from ..runs import Run

    t0 = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    if cfg.run is None:
        raise UserError("give the TCKR run folder: --run DIR")
    _check_common(cfg)
    tckr_dir = Path(cfg.run)
    lora_dir = tckr_dir / "lora_caption"
    tcfg = read_tckr_config(tckr_dir)
    if lora_dir.is_dir():
        refuse_pickle(lora_dir, "TCKR LoRA")
    if not (lora_dir / LORA_WEIGHTS).is_file():
        raise UserError(f"{lora_dir / LORA_WEIGHTS} not found (is {tckr_dir} a finished TCKR run?)")
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    gen = load_generator(str(tcfg["generator"]), device)
    load_lora(gen, lora_dir)
    gen.eval()
    size = gen.image_size
    images, _, prompts, nonmembers = load_tckr_run(tckr_dir, tcfg, size, gen.channels)
    features = build_features(cfg.features, min(size, 64), device)
    train_feats = features(images)
    threshold = _threshold(cfg, train_feats, features(nonmembers) if len(nonmembers) else None)
    w, lam = resolve_guidance("lora", cfg.w, cfg.lam, gen.vae is None)
    order = list(range(len(prompts)))
    random.Random(cfg.seed).shuffle(order)
    gen_prompts = [prompts[i] for i in order]
    common = (cfg.num_generations, cfg.gen_batch_size, cfg.seed, gen.latent_shape, gen_prompts)
    baseline = f"cfg_{cfg.baseline_cfg:g}"
    fx = generate_all(run_, "finextract", *common,
                      lambda p, z: generate_finextract(gen, p, z, cfg.sample_steps, w, lam), procs.shard)  # fmt: skip
    bl = generate_all(run_, baseline, *common,
                      lambda p, z: generate_cfg(gen, p, z, cfg.sample_steps, cfg.baseline_cfg), procs.shard)  # fmt: skip
    if fx is None:  # sharded: the main process merges and scores
        procs.barrier()
        if not procs.is_main:
            return {}
        fx = _load_generated(run_.dir, "finextract", cfg.num_generations)
        bl = _load_generated(run_.dir, baseline, cfg.num_generations)

    res = attack(features, fx, train_feats, threshold)
    base_res = attack(features, bl, train_feats, threshold)
    top = res["best"].argsort(descending=True)[:32]
    rows = [images[top], match_rows(images[top], fx, res["best_index"][top]),
            match_rows(images[top], bl, base_res["best_index"][top])]  # fmt: skip
    save_grid(run_.path("leaks.png"), torch.cat(rows), nrow=len(top))
    return run_.log_metrics(
        **res["scores"], **{f"baseline_{k}": v for k, v in base_res["scores"].items()},
        leaked_images=int((res["best"] >= threshold).sum()),
        baseline_leaked_images=int((base_res["best"] >= threshold).sum()),
        success_threshold=threshold, num_generations=cfg.num_generations, num_train_images=len(images),
        w=w, lam=lam, seconds=time.time() - t0,
    )  # fmt: skip
