"""``modelmine audit generator``: how many private training images a TCKR generator leaks.

Runs FineXtract (:mod:`modelmine.methods.finextract`; paper: Wu et al., arXiv:2410.03039) and its
CFG baseline on the LoRA a TCKR run fine-tuned (``RUN/lora_caption``), prompted with TCKR's own
training prompts ``"<class>: <caption>"`` (cycled in a seeded order), and scores the generations
against the run's private training images with the blocks of :mod:`modelmine.audit.extraction`.

The run folder says what was trained on: ``config.yaml`` (the ``generator``), ``split.json``
(``{"members": {"source", "files"}, "nonmembers": {...}}``, written by TCKR with
:func:`modelmine.data.describe_members`; the audit reads it, it never re-derives the split) and
``captions.json`` (one caption per member, in member order).

``leaked_images`` counts the private images whose best match reaches the threshold calibrated on
the non-members of the members' classes, which the LoRA never saw (``calibrated_threshold``, the
99% quantile of their best matches): the same meaning as before the paper's fixed-threshold rate
was added. ``calibrated_success_rate`` is that count as a fraction; ``success_rate`` is the paper's
rate at the fixed ``similarity_threshold`` (:mod:`modelmine.methods.finextract` says what the fixed
value means for each feature).

Candidates are ``N`` clusters as in FineXtract, or every generation when there are no more
generations than private images (e.g. 500 generations for the 1,077 private digits): clustering
would only throw candidates away, so ``leaked_images`` is the owner's worst case for this budget,
a lower bound on what a larger budget finds. Defaults follow FineXtract's for a LoRA (``w`` 5, fix
term ``k`` 0; ``w`` 1.25 for pixel-space generators, see :mod:`modelmine.methods.finextract`).
``membership`` (default on) also asks whether the LoRA reveals *which* images it was trained on:
the loss attack and PIA of :mod:`modelmine.audit.diffusion_mia` score every member and every
held-out non-member of the members' classes, prompted the same way (the non-members captioned here
by the run's captioner), for ``mia_loss_auc``, ``mia_pia_auc`` and their TPR at low FPR. Measured
leaks and costs are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ..captioning import captions_for, tckr_prompts
from ..config import Threads, read_yaml_mapping
from ..data import load_described, read_caption_list
from ..diffusion.finetune import load_lora
from ..diffusion.generator import LORA_WEIGHTS, GeneratorOptions, open_generator, refuse_pickle
from ..distributed import processes, resolve_device
from ..errors import UserError
from ..report import save_grid
from ..runs import Run, Task, atomic_save_tensors, load_generated, run_phase
from .diffusion_mia import MiaSettings, membership_attacks
from .extraction import (
    attack,
    build_features,
    calibrate_threshold,
    check_generation_settings,
    fixed_threshold,
    generate_all,
    generate_cfg,
    generate_finextract,
    match_rows,
    resolve_guidance,
)


@dataclass
class AuditGeneratorConfig(MiaSettings, GeneratorOptions, Threads):
    """`modelmine audit generator`: FineXtract on the LoRA generator of a TCKR run, and membership
    inference on it (``MiaSettings``: members against the held-out images, each prompted as TCKR
    prompts, the non-members captioned by the run's captioner)."""

    run: str | None = None  # the TCKR run folder
    w: float | None = None  # None: 5 (paper, LoRA); 1.25 for pixel-space generators
    k: float = 0.0  # the official fix term (0 for a LoRA)
    num_generations: int = 500
    sampler: Literal["ddim", "dpmpp_2m"] = "ddim"  # FineXtract's DDIM, as `modelmine extract`
    sample_steps: int = 50
    baseline_cfg: float = 3.0
    gen_batch_size: int = 100
    features: str = "pixels"
    # success_rate: best match >= similarity_threshold (fixed; None: FIXED_THRESHOLDS of the features);
    # leaked_images and calibrated_success_rate: >= calibrated_threshold (None: the
    # calibration_quantile of the run's held-out images' best match)
    similarity_threshold: float | None = None
    calibrated_threshold: float | None = None
    calibration_quantile: float = 0.99
    seed: int = 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


def read_tckr_run(run_dir: Path) -> tuple[str, Path, dict, str]:
    """A finished TCKR run's generator (from ``config.yaml``, ``yaml.safe_load``), LoRA folder,
    member split (``split.json``) and captioner; one-line UserErrors for anything else."""

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir} is not a TCKR run folder (no config.yaml)")
    tcfg = read_yaml_mapping(cfg_path, "TCKR config")
    if "generator" not in tcfg:
        raise UserError(f"{cfg_path} is not a TCKR config (needs a generator: key)")
    split_path = run_dir / "split.json"
    if not split_path.is_file():
        raise UserError(f"{run_dir} is not a finished TCKR run (no split.json)")
    split = _read_json(split_path)
    for key in ("members", "nonmembers"):
        entry = split.get(key) if isinstance(split, dict) else None
        if not isinstance(entry, dict) or "source" not in entry or "files" not in entry:
            raise UserError(f"{split_path} needs a {key} entry with source and files")
    lora_dir = run_dir / "lora_caption"
    if lora_dir.is_dir():
        refuse_pickle(lora_dir, "TCKR LoRA")
    if not (lora_dir / LORA_WEIGHTS).is_file():
        raise UserError(f"{lora_dir / LORA_WEIGHTS} not found (is {run_dir} a finished TCKR run?)")
    return str(tcfg["generator"]), lora_dir, split, str(tcfg.get("captioner") or "attributes")


def load_members(run_dir: Path, split: dict, size: int, channels: int):
    """The run's private training images ``(N, C, H, W)``, their TCKR prompts ``"<class>: <caption>"``
    (``captions.json``, else the members' own captions) and the non-members of the members' classes
    (an ImageSet), all at ``size`` with ``channels``."""
    members = load_described(split["members"], size, channels)
    nonmembers = load_described(split["nonmembers"], size, channels)
    captions_path = run_dir / "captions.json"
    if captions_path.is_file():
        captions = read_caption_list(captions_path)
    elif members.captions is not None:
        captions = list(members.captions)
    else:
        raise UserError(f"{run_dir} has no captions.json")
    if len(captions) != len(members):
        raise UserError(f"{captions_path} has {len(captions)} captions for {len(members)} private images")
    prompts = tckr_prompts(members.class_names, members.labels, captions)
    keep = torch.isin(nonmembers.labels, members.labels.unique())
    return members.images, prompts, nonmembers.subset(keep.nonzero().flatten())


def membership_audit(
    cfg: AuditGeneratorConfig, run_: Run, gen, images, member_prompts, nonmembers, captioner
):
    """Both attacks of :mod:`modelmine.audit.diffusion_mia` on the members ``(N, C, H, W)`` against
    the held-out ``nonmembers``, prompted the same way (the non-members captioned here by the run's
    ``captioner``); AUC and TPR at low FPR per attack (``mia_loss_*``, ``mia_pia_*``) and their
    scores in ``mia_scores.safetensors``."""
    if len(nonmembers) == 0:
        raise UserError(
            f"{cfg.run}'s split has no held-out images of the members' classes to test membership against"
        )
    t0 = time.time()
    captions = captions_for(nonmembers, captioner, device=gen.device)
    prompts = member_prompts + tckr_prompts(nonmembers.class_names, nonmembers.labels, captions)
    metrics, scores = membership_attacks(cfg, gen, images, nonmembers.images, prompts, seed=cfg.seed)
    atomic_save_tensors(run_.path("mia_scores.safetensors"), scores)
    return metrics | {"mia_seconds": time.time() - t0, "mia_num_nonmembers": len(nonmembers)}


def save_leaks(
    path: Path, images: torch.Tensor, fx: torch.Tensor, bl: torch.Tensor, res: dict, base_res: dict
):
    """``leaks.png``: the 32 best-matched private images over their FineXtract and baseline matches."""
    top = res["best"].argsort(descending=True)[:32]
    rows = [images[top], match_rows(images[top], fx, res["best_index"][top]),
            match_rows(images[top], bl, base_res["best_index"][top])]  # fmt: skip
    save_grid(path, torch.cat(rows), nrow=len(top))


def leak_threshold(cfg: AuditGeneratorConfig, features, train_feats: torch.Tensor, nonmembers) -> float:
    """``cfg.calibrated_threshold``, or the one calibrated on the held-out images ``(M, C, H, W)``."""
    if cfg.calibrated_threshold is not None:
        return cfg.calibrated_threshold
    if len(nonmembers) == 0:
        raise UserError(
            f"{cfg.run}'s split has no held-out images of the members' classes to calibrate the "
            "leak threshold; set calibrated_threshold"
        )
    return calibrate_threshold(train_feats, features(nonmembers), cfg.calibration_quantile)


def run(cfg: AuditGeneratorConfig, out: Path) -> dict:
    """FineXtract (and the CFG baseline) on ``cfg.run/lora_caption``. Writes ``metrics.json``
    (``leaked_images``: private images whose best match reaches the calibrated threshold;
    ``calibrated_success_rate``, the same as a fraction; ``success_rate``, the paper's, at the fixed
    ``similarity_threshold``; ``avg_similarity``, ``baseline_*``, both thresholds,
    ``num_generations``, ``num_train_images``, ``w``, ``k``; ``membership``: ``mia_loss_*`` and
    ``mia_pia_*``, :func:`membership_audit`) and ``leaks.png`` (:func:`save_leaks`)."""
    t0 = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    if cfg.run is None:
        raise UserError("give the TCKR run folder: --run DIR")
    check_generation_settings(
        cfg.num_generations, cfg.sample_steps, cfg.gen_batch_size, cfg.calibration_quantile,
        cfg.similarity_threshold,
    )  # fmt: skip
    generator, lora_dir, split, captioner = read_tckr_run(Path(cfg.run))
    if cfg.similarity_threshold is None:  # resolved before config.yaml is written
        cfg = replace(cfg, similarity_threshold=fixed_threshold(cfg.features))
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    gen = open_generator(generator, cfg, device)
    load_lora(gen, lora_dir)
    gen.eval()
    images, prompts, nonmembers = load_members(Path(cfg.run), split, gen.image_size, gen.channels)
    features = build_features(cfg.features, min(gen.image_size, 64), device)
    train_feats = features(images)
    calibrated = leak_threshold(cfg, features, train_feats, nonmembers.images)  # what leaked_images counts
    w, k = resolve_guidance("lora", cfg.w, cfg.k, gen.vae is None)
    member_prompts = list(prompts)
    random.Random(cfg.seed).shuffle(prompts)  # generation i uses prompts[i % N] in a seeded order
    steps, s = cfg.sample_steps, cfg.baseline_cfg
    makers = {"finextract": lambda p, z: generate_finextract(gen, p, z, steps, w, k),
              f"cfg_{s:g}": lambda p, z: generate_cfg(gen, p, z, steps, s)}  # fmt: skip
    common = (cfg.num_generations, cfg.gen_batch_size, cfg.seed, gen.latent_shape, prompts)
    # in this process (both use its generator), each its share of the batches under a launch
    run_phase(
        procs, [], [Task(generate_all, (run_, f, *common, make, procs.shard)) for f, make in makers.items()]
    )
    if not procs.is_main:  # the main process scores
        return {}

    # the generations, uint8 (M, C, H, W)
    fx, bl = (load_generated(run_, f, cfg.num_generations, cfg.gen_batch_size)["images"] for f in makers)
    thresholds = (cfg.similarity_threshold, calibrated)
    res, base_res = (attack(features, x, train_feats, *thresholds) for x in (fx, bl))
    save_leaks(run_.path("leaks.png"), images, fx, bl, res, base_res)
    return run_.log_metrics(
        **res["scores"], **{f"baseline_{key}": v for key, v in base_res["scores"].items()},
        leaked_images=int((res["best"] >= calibrated).sum()),
        baseline_leaked_images=int((base_res["best"] >= calibrated).sum()),
        similarity_threshold=cfg.similarity_threshold, calibrated_threshold=calibrated,
        num_generations=cfg.num_generations, num_train_images=len(images), w=w, k=k,
        **(membership_audit(cfg, run_, gen, images, member_prompts, nonmembers, captioner) if cfg.membership else {}),
        seconds=time.time() - t0,
    )  # fmt: skip
