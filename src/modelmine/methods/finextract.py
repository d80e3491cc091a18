"""FineXtract: extract the fine-tuning images of a personalised text-to-image diffusion model.

X. Wu, J. Zhang, S. Wu, "Leveraging Model Guidance to Extract Training Data from Personalized
Diffusion Models" (arXiv:2410.03039; official code: github.com/Nicholas0228/FineXtract).

Model guidance (:class:`modelmine.diffusion.guidance.ModelGuidance`): the fine-tuned distribution
is treated as an interpolation between the pretrained model's and the fine-tuning data's, so
extrapolating from the pretrained model toward the fine-tuned one moves samples toward the
fine-tuning images. Every DDIM step uses

    eps = eps_pre(x_t, empty) + w * (eps_ft(x_t, c) - eps_pre(x_t, empty)) + lambda * eps_pre(x_t, empty)

with ``c`` the instance prompt, ``eps_pre`` the pretrained and ``eps_ft`` the fine-tuned model,
without CFG (a LoRA: one UNet, adapter off for ``eps_pre``; full fine-tuning: two generators).
The generations are clustered and the candidates scored against the training images; the
baseline is plain CFG of the fine-tuned model from the same start noise, scored the same way
(:mod:`modelmine.audit.extraction` holds these blocks; this module is ``modelmine extract``).
The embedded default fine-tunes the embedded pixel-space generator here, in each of ``modes``, on
the first ``num_train_images`` private digits of ``train_class`` ("a photo of digit three"); the
other private digits of that class calibrate the success threshold.

Defaults (paper: the paper or the official ``Trainer.py`` / ``Generator.py`` / ``Cluster.py``):

| setting    | paper                          | ours                          | why                          |
|------------|--------------------------------|-------------------------------|------------------------------|
| w, lambda  | LoRA 5, 0; DreamBooth 3, -0.02 | same; w = 1.25 in pixel space | paper's w gives noise here   |
| sampling   | 50 DDIM steps, 500 generations | same                          |                              |
| baseline   | CFG 3                          | CFG 3 (+ extra_baseline_cfgs) | more scales, same noise      |
| N images   | 10                             | 10 digits of one class        |                              |
| LoRA       | rank 64, lr 1e-4, attention    | rank 8, lr 3e-3, + convs      | attention alone barely moves |
|            |                                | (UNET_LORA_TARGETS)           | a tiny UNet                  |
| LoRA steps | 200 per image at batch 1       | 400 at batch 10 (400/image)   | batched; 200 extracts none   |
| full       | lr 2e-6, 200 per image         | lr 1e-4, 300 at batch 10      | batched; fits the CPU budget |
| features   | SSCD                           | centred pixels (or dino)      | SSCD ships only as a pickle  |
| threshold  | fixed, on SSCD                 | 99% quantile of non-members   | a class's digits look alike  |
| clustering | maximal cliques (networkx)     | greedy cliques, exactly N     | deterministic, O(n^2)        |

Other deviations: clamping x0 and recomputing eps (the official ``dt`` option) and guiding only
the late steps did not help on the embedded model, and there model guidance does not beat CFG at
the model's own sampling scale. Measured sweeps, success rates and costs: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audit import extraction
from ..data import fit_to, load_digits, load_image_folder
from ..diffusion.finetune import UNET_LORA_TARGETS, TrainSettings, finetune_or_load, load_lora
from ..diffusion.generator import Generator, check_serves, checkpoint_kind, refuse_pickle
from ..distributed import Shard, processes, resolve_device
from ..errors import UserError
from ..report import save_grid
from ..runs import Run, atomic_save_tensors, load_generated, run_phase

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
    lora_targets: list[str] = field(default_factory=lambda: list(UNET_LORA_TARGETS))
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


def load_train_data(cfg: ExtractConfig, size: int, channels: int):
    """The fine-tuning images ``(N, C, H, W)``, their instance prompt and the real non-members
    ``(M, C, H, W)`` (``heldout_data``; None without it). Embedded default: the first N private
    digits of ``train_class``; non-members all other private digits of that class."""
    if cfg.prompt is not None and not cfg.prompt.strip():
        raise UserError("--prompt is empty; give the instance prompt the model was fine-tuned with")
    if cfg.data is None:
        sets = {s: load_digits(s, size) for s in ("train", "heldout", "test")}
        k = sets["train"].num_classes
        if not 0 <= cfg.train_class < k:
            raise UserError(f"train_class must be a class index 0..{k - 1}, got {cfg.train_class}")
        train, heldout, test = (d.images[d.labels == cfg.train_class] for d in sets.values())
        n = cfg.num_train_images
        if not 1 <= n < len(train):
            raise UserError(f"num_train_images must be in 1..{len(train) - 1}, got {n}")
        images = fit_to(train[:n], size, channels)
        nonmembers = fit_to(torch.cat([train[n:], heldout, test]), size, channels)
        prompt = (cfg.prompt or EMBEDDED_PROMPT).replace("{c}", sets["train"].class_names[cfg.train_class])
    else:
        data = load_image_folder(cfg.data, size=size)  # its own channels: RGB on a grey base stops
        if len(data) == 0:
            raise UserError(f"{cfg.data} holds no images")
        check_serves(channels, data.images.shape[1], cfg.base, "--base")
        if cfg.prompt is None:
            raise UserError("give the instance prompt the model was fine-tuned with: --prompt '...'")
        images, prompt, nonmembers = fit_to(data.images, size, channels), cfg.prompt, None
    if cfg.heldout_data is not None:
        nonmembers = load_image_folder(cfg.heldout_data, size=size, channels=channels).images
    return images, prompt, nonmembers


def _check(cfg: ExtractConfig) -> list[str]:
    """Validate the config (nothing loaded yet); returns the modes to run."""
    extraction.check_generation_settings(
        cfg.num_generations, cfg.sample_steps, cfg.gen_batch_size, cfg.calibration_quantile
    )
    if cfg.workers < 1:
        raise UserError(f"workers must be >= 1, got {cfg.workers}")
    if cfg.base != "embedded":
        refuse_pickle(cfg.base, "base generator")
    if cfg.finetuned is not None:
        kind = checkpoint_kind(cfg.finetuned)
        if cfg.data is None:
            raise UserError("give the fine-tuning images of --finetuned with --data to score the extraction")
        return [kind]
    if not cfg.modes or any(m not in ("lora", "full") for m in cfg.modes):
        raise UserError(f"modes must be a non-empty list of lora/full, got {cfg.modes}")
    return list(dict.fromkeys(cfg.modes))


def _baselines(cfg: ExtractConfig) -> dict[str, float]:
    """Metric prefix -> CFG scale of each baseline; its generations are in ``<mode>/cfg_<scale>``."""
    return {"baseline": cfg.baseline_cfg} | {f"baseline_cfg{s:g}": s for s in cfg.extra_baseline_cfgs}


def finetuned_generator(
    cfg: ExtractConfig, out: Path, mode: str, base: Generator, images: torch.Tensor, prompt: str, device
) -> Generator:
    """The fine-tuned generator of ``mode``: loaded from ``cfg.finetuned``, or fine-tuned here on
    ``images`` ``(N, C, H, W)`` (saved under ``out/<mode>/``, resumable). LoRA: ``base`` itself
    with the adapter on (switched off for ``eps_pre``); full: a copy, so ``base`` stays pretrained."""
    if cfg.finetuned is not None:
        if mode == "lora":
            refuse_pickle(cfg.finetuned, "LoRA")
            load_lora(base, cfg.finetuned)
            return base.eval()
        return Generator.from_pretrained(cfg.finetuned).to(device).eval()
    m = cfg.lora if mode == "lora" else cfg.full
    settings = TrainSettings(
        steps=m.steps, batch_size=m.batch_size, lr=m.lr, seed=cfg.seed, rank=m.rank, alpha=m.alpha,
        targets=cfg.lora_targets,
    )  # fmt: skip
    folder = out / mode
    ft, _ = finetune_or_load(
        base if mode == "lora" else copy.deepcopy(base), folder, mode, images, [prompt] * len(images),
        settings, checkpoint=folder / "checkpoint.pt", device=device, source=cfg.base,
    )  # fmt: skip
    return ft


def task_mode(
    cfg: ExtractConfig, out: str, mode: str, shard: Shard | None = None, generate: bool = True
) -> None:
    """Fine-tune (or load) the ``mode`` model and write its FineXtract and baseline generations
    under ``out/<mode>/`` (resumable batches; only ``shard``'s when given; none without ``generate``)."""
    torch.manual_seed(cfg.seed)
    run_ = Run(out)
    device = resolve_device(cfg.device)
    base = Generator.from_pretrained(cfg.base).to(device).eval()
    images, prompt, _ = load_train_data(cfg, base.image_size, base.channels)
    ft = finetuned_generator(cfg, run_.dir, mode, base, images, prompt, device)
    if not generate:
        return
    mcfg = cfg.lora if mode == "lora" else cfg.full
    w, lam = extraction.resolve_guidance(mode, mcfg.w, mcfg.lam, ft.vae is None)
    pre = None if mode == "lora" else base
    if pre is not None and pre.latent_shape != ft.latent_shape:
        raise UserError(
            f"base and fine-tuned generator shapes differ: {pre.latent_shape} vs {ft.latent_shape}"
        )
    common = (cfg.num_generations, cfg.gen_batch_size, cfg.seed, ft.latent_shape, [prompt])
    steps = cfg.sample_steps
    makers = {"finextract": lambda p, z: extraction.generate_finextract(ft, p, z, steps, w, lam, base=pre)}
    for s in _baselines(cfg).values():
        makers[f"cfg_{s:g}"] = lambda p, z, s=s: extraction.generate_cfg(ft, p, z, steps, s)
    for folder, make in makers.items():  # batch i starts from the same noise for every method
        extraction.generate_all(run_, f"{mode}/{folder}", *common, make, shard)


def run(cfg: ExtractConfig, out: Path) -> dict:
    """FineXtract and the CFG baseline on every mode. Writes ``matches.png`` (per mode: training
    images, FineXtract's and the baseline's best candidates), ``<mode>/candidates.safetensors`` and
    ``metrics.json``: ``success_rate``, ``avg_similarity``, ``baseline_*`` (means over the modes),
    the same prefixed by the mode (``lora_``, ``full_``), ``baseline_cfg<s>_*`` for extra baseline
    scales, ``success_threshold``, ``num_generations`` (per method and mode), ``num_train_images``."""
    t0 = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    modes = _check(cfg)
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    size, channels = Generator.geometry(cfg.base)  # without loading the generator in this process
    images, _, nonmembers = load_train_data(cfg, size, channels)
    if cfg.num_generations < len(images):
        raise UserError(f"num_generations ({cfg.num_generations}) must be >= the {len(images)} train images")
    # features and threshold first: a bad feature name or a missing calibration set fails before any work
    features = extraction.build_features(cfg.features, min(size, 64), device)
    train_feats = features(images)
    nonmember_feats = None if nonmembers is None else features(nonmembers)
    threshold = extraction.choose_threshold(
        cfg.success_threshold, cfg.calibration_quantile, train_feats, nonmember_feats
    )
    o = str(run_.dir)
    # Several processes: the main one fine-tunes every mode, then all draw their share of the batches.
    # One process: each mode's fine-tune + generation is one task, so the modes run side by side.
    finetune = [(task_mode, (cfg, o, m, None, False)) for m in modes] if procs.count > 1 else []
    run_phase(procs, finetune, [], cfg.workers, cfg.threads)
    run_phase(procs, [], [(task_mode, (cfg, o, m, procs.shard)) for m in modes], cfg.workers, cfg.threads)
    if not procs.is_main:  # the main process clusters and scores
        return {}

    metrics, rows = {}, []
    for mode in modes:
        mode_metrics, mode_rows = _score_mode(cfg, run_, mode, images, features, train_feats, threshold)
        metrics, rows = metrics | mode_metrics, rows + mode_rows
    save_grid(run_.path("matches.png"), torch.cat(rows), nrow=len(images))
    for key in ["success_rate", "avg_similarity"]:  # the headline numbers: means over the modes
        for name in ["", *(f"{b}_" for b in _baselines(cfg))]:
            metrics[name + key] = sum(metrics[f"{m}_{name}{key}"] for m in modes) / len(modes)
    return run_.log_metrics(
        **metrics, success_threshold=threshold, num_generations=cfg.num_generations,
        num_train_images=len(images), seconds=time.time() - t0,
    )  # fmt: skip


def _score_mode(cfg: ExtractConfig, run_: Run, mode: str, images, features, train_feats, threshold):
    """Attack each method's generations of ``mode``; returns the ``<mode>_``-prefixed metrics and the
    grid rows (training images ``(N, C, H, W)``, then FineXtract's and the baseline's best
    candidates), and saves the candidates."""
    folders = {"finextract": "finextract"} | {k: f"cfg_{s:g}" for k, s in _baselines(cfg).items()}
    metrics: dict[str, float] = {}
    rows, saved = [images], {}
    for name, folder in folders.items():
        generated = load_generated(run_, f"{mode}/{folder}", cfg.num_generations, cfg.gen_batch_size)
        x = generated["images"]  # uint8 (M, C, H, W)
        res = extraction.attack(features, x, train_feats, threshold)
        prefix = f"{mode}_" if name == "finextract" else f"{mode}_{name}_"
        metrics |= {prefix + k: v for k, v in res["scores"].items()}
        metrics[prefix + "seconds"] = generated["seconds"]
        if name in ("finextract", "baseline"):
            rows.append(extraction.match_rows(images, x, res["best_index"]))
        saved |= {f"{name}_best": res["best"], f"{name}_candidates": x[res["candidates"]]}
    atomic_save_tensors(run_.path(mode, "candidates.safetensors"), saved)
    info_path = run_.dir / mode / "train_info.json"
    if info_path.exists():
        metrics[f"{mode}_train_seconds"] = json.loads(info_path.read_text())["train_seconds"]
    return metrics, rows
