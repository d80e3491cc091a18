"""FineXtract: extract the fine-tuning images of a personalised text-to-image diffusion model.

X. Wu, J. Zhang, S. Wu, "Leveraging Model Guidance to Extract Training Data from Personalized
Diffusion Models" (arXiv:2410.03039, ICML 2025; official code: github.com/Nicholas0228/FineXtract,
``Trainer.py``, ``Generator.py`` / ``contrasted_sample.py``, ``Cluster.py``).

The fine-tuned model is read as ``p_ft ~ p_pre^(1 - lambda) q^lambda``, ``q`` the fine-tuning data, so
``q``'s score lies at guidance scale ``w = 1 / lambda`` from the pretrained toward the fine-tuned model.
Every sampling step (:class:`~modelmine.diffusion.guidance.ModelGuidance`) uses, without CFG,

    eps = eps_pre(x_t, "") + w (eps_ft(x_t, c) - eps_pre(x_t, "")) + k eps_pre(x_t, "")

with ``c`` the instance prompt and ``k`` the official ``fix_term``; a LoRA is one UNet, its adapter off
for ``eps_pre``; full fine-tuning uses two generators. The baseline is CFG of the fine-tuned model from
the same start noise, ``eps = eps_ft(x_t, "") + s (eps_ft(x_t, c) - eps_ft(x_t, ""))``, ``s`` from
``baseline_cfg``. Clustering (:mod:`modelmine.audit.extraction`): two generations are linked when their
features' cosine is at least ``tau``, which starts at the 25% quantile over all pairs and rises by 0.01
until greedy largest-clique removal yields ``N`` cliques; each clique's member nearest its mean feature
is a candidate. With ``s_i`` training image ``i``'s best candidate similarity: ``avg_similarity =
mean_i s_i``, ``success_rate = mean_i [s_i >= similarity_threshold]``, and ``calibrated_success_rate``
the same at ``calibrated_threshold``, by default the ``calibration_quantile`` quantile of real
non-members' best similarity to the training images. ``features`` ``dino`` (DINOv2) keeps the paper's
SSCD threshold, which is not calibrated for it: set ``similarity_threshold``. Without ``finetuned``,
the embedded pixel-space generator is fine-tuned here in each of ``modes`` on ``num_train_images``
private digits of ``train_class``; the class's other digits (or ``heldout_data``) are the non-members,
against which :mod:`modelmine.audit.diffusion_mia`'s attacks score each mode (``<mode>_mia_*``).

Without a field: DDIM's last step uses the final alpha (official: ``alpha_prev`` of ``t = 1``); the
official optional ``dt`` re-normalisation of ``x0_hat`` (off in its runs) is not implemented; greedy
cliques, exactly ``N`` candidates, replace networkx's maximal cliques with a 30 s timeout.

| field | paper or official code | why ours differs |
|---|---|---|
| ``lora.w``, ``full.w`` | LoRA 5, DreamBooth 3 | the paper's for latent models; noise in pixel space |
| ``lora.k``, ``full.k`` | LoRA 0, DreamBooth -0.02 (``fix_term``) | official |
| ``num_generations``, ``sampler``, ``sample_steps`` | 500, DDIM 50 steps | the paper's (DPM-Solver++ 10: below CFG) |
| ``baseline_cfg``, ``extra_baseline_cfgs`` | CFG 3 | the paper's; more scales from the same noise |
| ``num_train_images``, ``train_class`` | 10 images of one subject | a digit class stands in for a subject |
| ``lora.rank``, ``lora.lr``, ``lora.target_modules`` | 64, 1e-4, attention | tiny UNet: attention barely moves it |
| ``lora.steps_per_image``, ``lora.batch_size`` | 200 per image, batch 1 | batched; more: 200 under-fits |
| ``full.lr``, ``full.steps_per_image``, ``full.batch_size`` | lr 2e-6, 200 per image | batched; CPU budget |
| ``prompt``, ``identifier`` | "a photo of sks [class]" | the embedded tokenizer knows the class words |
| ``features``, ``similarity_threshold`` | SSCD >= 0.7 | SSCD is a download: centred pixels; ``sscd:<file>`` the paper's |
| ``calibrated_threshold``, ``calibration_quantile`` | none | one class's digits correlate like copies |
| ``prompt_search`` | caption of up to 7 words, no code | left open: greedy words on the prediction shift |
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from ..audit import extraction
from ..audit.diffusion_mia import MiaSettings, membership_attacks
from ..audit.prompt import PromptSearchConfig, check_search, prompt_token_accuracy, recover_prompt
from ..config import Workers
from ..data import DIGIT_NAMES, dataset_channels, fit_to, is_builtin, load_builtin, load_image_folder
from ..diffusion.finetune import UNET_LORA_TARGETS, TrainSettings, finetune_or_load, load_lora
from ..diffusion.generator import (
    Generator,
    GeneratorOptions,
    check_serves,
    checkpoint_kind,
    embedded_for,
    embedded_weights,
    open_generator,
    refuse_pickle,
)
from ..distributed import Shard, processes, resolve_device
from ..errors import UserError
from ..report import save_grid
from ..runs import Run, Task, atomic_save_tensors, atomic_write_text, load_generated, run_phase

EMBEDDED_PROMPT = "a photo of digit {c}"  # the built-in digit datasets
BUILTIN_PROMPT = "a photo of {c}"  # other built-ins (their class words are new tokens)
# DreamBooth's instance prompt (Ruiz et al., 2023): "a photo of [identifier] [class noun]"; the
# embedded tokenizer does not know the identifier, so it becomes a new token trained with the
# fine-tuning (modelmine.diffusion.tokens)
IDENTIFIER_PROMPT = "a photo of {id} digit"
AUTO = "auto"  # --prompt auto: recover the prompt from the two models (modelmine.audit.prompt)


@dataclass
class ModeConfig:
    """One fine-tuning mode of the embedded default, and the guidance used to attack it."""

    w: float | None = None  # None: 5 (LoRA) / 3 (full) as in the paper; 1.25 for pixel-space generators
    k: float | None = None  # the official fix term; None: 0 (LoRA) / -0.02 (full), as in the official runs
    # None: steps_per_image x N / batch_size, so every image is seen steps_per_image times (the
    # DreamBooth/LoRA recipes give their budgets per image); resolved into config.yaml
    steps: int | None = None
    steps_per_image: int = 400
    lr: float = 3e-3
    batch_size: int = 10
    rank: int = 8  # LoRA only
    alpha: float = 8.0  # LoRA only
    target_modules: list[str] = field(default_factory=lambda: list(UNET_LORA_TARGETS))  # LoRA only


@dataclass
class ExtractConfig(MiaSettings, GeneratorOptions, Workers):
    """`modelmine extract`: FineXtract and its CFG baseline on a (pretrained, fine-tuned) pair."""

    base: str = "embedded"  # pretrained: "embedded" (grey or RGB, as the data), an embedded .safetensors, an SD folder
    # the audited model: a LoRA (.safetensors / folder) or a fully fine-tuned generator (diffusers
    # folder, embedded .safetensors); None: fine-tune `base` here on `data` in every mode of `modes`
    finetuned: str | None = None
    # the fine-tuning images: an ImageFolder, or a built-in dataset (digits, mnist5k: its train_class
    # images); None: the private digits
    data: str | None = None
    heldout_data: str | None = None  # real non-members (ImageFolder) to calibrate the success threshold
    prompt: str | None = None  # instance prompt; default "a photo of digit {c}" (patches: "a photo of {c}");
    # "auto": recovered from the base and fine-tuned models (prompt_search), the attack runs with it
    true_prompt: str | None = None  # with "auto": the real prompt, if known, to score the recovery
    prompt_search: PromptSearchConfig = field(default_factory=PromptSearchConfig)
    # embedded default: fine-tune with DreamBooth's rare-token prompt "a photo of <identifier> digit"
    # (e.g. "sks") instead of "a photo of digit {c}"; ignored when a prompt is given
    identifier: str | None = None
    train_class: int = 3  # embedded default: the digit class of the fine-tuning images
    num_train_images: int = 10  # embedded default: N
    modes: list[str] = field(default_factory=lambda: ["lora", "full"])  # when fine-tuning here
    lora: ModeConfig = field(default_factory=ModeConfig)
    full: ModeConfig = field(default_factory=lambda: ModeConfig(steps_per_image=300, lr=1e-4))
    num_generations: int = 500
    # the paper's DDIM at 50 steps: at 10 steps DPM-Solver++(2M) lost FineXtract's lead over CFG on
    # mnist5k (benchmarks/RESULTS.md, FineXtract)
    sampler: Literal["ddim", "dpmpp_2m"] = "ddim"
    sample_steps: int = 50
    baseline_cfg: float = 3.0  # the official baseline's CFG scale
    extra_baseline_cfgs: list[float] = field(default_factory=list)  # more baselines, same noise
    gen_batch_size: int = 100
    features: str = "pixels"  # pixels, dino, dino:<model>, sscd:<file>, torchscript:<file>
    # success_rate: best match >= similarity_threshold (fixed; None: extraction.FIXED_THRESHOLDS of the
    # features); calibrated_success_rate: >= calibrated_threshold (None: the calibration_quantile of
    # real non-members' best match; no non-members: not reported)
    similarity_threshold: float | None = None
    calibrated_threshold: float | None = None
    calibration_quantile: float = 0.99
    seed: int = 0


def load_train_data(cfg: ExtractConfig, size: int, channels: int):
    """The fine-tuning images ``(N, C, H, W)``, their instance prompt (``--prompt auto``: the
    ``true_prompt``, None when unknown) and the real non-members ``(M, C, H, W)`` (``heldout_data``;
    None without it). Embedded default: the first N private digits of ``train_class``; non-members
    all other private digits of that class."""
    if cfg.prompt is not None and not cfg.prompt.strip():
        raise UserError("--prompt is empty; give the instance prompt the model was fine-tuned with")
    given = cfg.true_prompt if cfg.prompt == AUTO else cfg.prompt  # the real prompt, when known
    if cfg.data is None or is_builtin(cfg.data):
        sets = {s: load_builtin(cfg.data or "digits", s, size) for s in ("train", "heldout", "test")}
        k = sets["train"].num_classes
        if not 0 <= cfg.train_class < k:
            raise UserError(f"train_class must be a class index 0..{k - 1}, got {cfg.train_class}")
        train, heldout, test = (d.images[d.labels == cfg.train_class] for d in sets.values())
        n = cfg.num_train_images
        if not 1 <= n < len(train):
            raise UserError(f"num_train_images must be in 1..{len(train) - 1}, got {n}")
        images = fit_to(train[:n], size, channels)
        nonmembers = fit_to(torch.cat([train[n:], heldout, test]), size, channels)
        if given is None and cfg.identifier is not None:
            if not cfg.identifier.strip() or len(cfg.identifier.split()) != 1:
                raise UserError(f"identifier must be one word, got {cfg.identifier!r}")
            given = IDENTIFIER_PROMPT.replace("{id}", cfg.identifier.strip())
        names = sets["train"].class_names
        default = EMBEDDED_PROMPT if names == DIGIT_NAMES else BUILTIN_PROMPT
        prompt = (given or default).replace("{c}", names[cfg.train_class])
    else:
        data = load_image_folder(cfg.data, size=size)  # its own channels: RGB on a grey base stops
        if len(data) == 0:
            raise UserError(f"{cfg.data} holds no images")
        check_serves(channels, data.images.shape[1], cfg.base, "--base")
        if cfg.prompt is None:
            raise UserError(
                "give the instance prompt the model was fine-tuned with: --prompt '...' (or auto)"
            )
        images, prompt, nonmembers = fit_to(data.images, size, channels), given, None
    if cfg.heldout_data is not None:
        nonmembers = load_image_folder(cfg.heldout_data, size=size, channels=channels).images
    return images, prompt, nonmembers


def _resolve(cfg: ExtractConfig) -> ExtractConfig:
    """The settings that derive from the features and the data, before ``config.yaml`` is written:
    the fixed threshold and the embedded base that makes the data's channels."""
    if cfg.similarity_threshold is None:
        cfg = replace(cfg, similarity_threshold=extraction.fixed_threshold(cfg.features))
    return replace(cfg, base=embedded_for(cfg.base, dataset_channels(cfg.data or "digits")))


def _check(cfg: ExtractConfig) -> list[str]:
    """Validate the config (nothing loaded yet); returns the modes to run."""
    extraction.check_generation_settings(
        cfg.num_generations, cfg.sample_steps, cfg.gen_batch_size, cfg.calibration_quantile,
        cfg.similarity_threshold,
    )  # fmt: skip
    if cfg.workers < 1:
        raise UserError(f"workers must be >= 1, got {cfg.workers}")
    if cfg.prompt == AUTO:
        check_search(cfg.prompt_search)
        if (
            cfg.finetuned is None
            and cfg.data is not None
            and not is_builtin(cfg.data)
            and not cfg.true_prompt
        ):
            raise UserError(
                "fine-tuning here on --data needs its prompt: --set true_prompt='...' (--prompt auto "
                "recovers the prompt of a given --finetuned model)"
            )
    if embedded_weights(cfg.base) is None:
        refuse_pickle(cfg.base, "base generator")
    if cfg.finetuned is not None:
        kind = checkpoint_kind(cfg.finetuned)
        if cfg.data is None:
            raise UserError("give the fine-tuning images of --finetuned with --data to score the extraction")
        return [kind]
    if not cfg.modes or any(m not in ("lora", "full") for m in cfg.modes):
        raise UserError(f"modes must be a non-empty list of lora/full, got {cfg.modes}")
    return list(dict.fromkeys(cfg.modes))


def resolve_steps(m: ModeConfig, num_images: int) -> ModeConfig:
    """``m`` with ``steps`` set: given, or ``ceil(steps_per_image * N / batch)`` with the batch
    ``min(batch_size, N)``, so each of the ``N`` fine-tuning images is drawn ``steps_per_image`` times
    on average whatever ``N`` is (10 images at batch 10: 400 LoRA / 300 full steps)."""
    if m.steps is not None:
        if m.steps < 1:
            raise UserError(f"fine-tuning steps must be >= 1, got {m.steps}")
        return m
    if m.steps_per_image < 1 or m.batch_size < 1:
        raise UserError("steps_per_image and batch_size must be >= 1")
    batch = min(m.batch_size, num_images)
    return replace(m, steps=math.ceil(m.steps_per_image * num_images / batch))


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
        return open_generator(cfg.finetuned, cfg, device).eval()
    m = cfg.lora if mode == "lora" else cfg.full
    settings = TrainSettings(
        steps=m.steps, batch_size=m.batch_size, lr=m.lr, seed=cfg.seed, rank=m.rank, alpha=m.alpha,
        targets=m.target_modules,
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
    base = open_generator(cfg.base, cfg, device).eval()
    images, prompt, nonmembers = load_train_data(cfg, base.image_size, base.channels)
    ft = finetuned_generator(cfg, run_.dir, mode, base, images, prompt, device)
    pre = None if mode == "lora" else base
    if pre is not None and pre.latent_shape != ft.latent_shape:
        raise UserError(
            f"base and fine-tuned generator shapes differ: {pre.latent_shape} vs {ft.latent_shape}"
        )
    recovered = recovered_prompt(cfg, run_, mode, ft, pre) if cfg.prompt == AUTO else None
    if not generate:
        return
    mcfg = cfg.lora if mode == "lora" else cfg.full
    w, k = extraction.resolve_guidance(mode, mcfg.w, mcfg.k, ft.vae is None)
    attack_prompt = prompt if prompt is not None else recovered  # the true one when known
    steps = cfg.sample_steps
    makers = {"finextract": lambda p, z: extraction.generate_finextract(ft, p, z, steps, w, k, base=pre)}
    for s in _baselines(cfg).values():
        makers[f"cfg_{s:g}"] = lambda p, z, s=s: extraction.generate_cfg(ft, p, z, steps, s)
    prompts = dict.fromkeys(makers, attack_prompt)
    if recovered is not None and prompt is not None:  # the attack with the recovered prompt beside it
        makers[RECOVERED], prompts[RECOVERED] = makers["finextract"], recovered
    for folder, make in makers.items():  # batch i starts from the same noise for every method
        common = (cfg.num_generations, cfg.gen_batch_size, cfg.seed, ft.latent_shape, [prompts[folder]])
        extraction.generate_all(run_, f"{mode}/{folder}", *common, make, shard)
    path = run_.path(mode, "mia.json")
    if (
        cfg.membership
        and nonmembers is not None
        and not path.exists()
        and (shard is None or shard.index == 0)
    ):
        mia, _ = membership_attacks(cfg, ft, images, nonmembers, [attack_prompt] * (len(images) + len(nonmembers)),
                                    seed=cfg.seed, base=pre)  # fmt: skip
        atomic_write_text(path, json.dumps(mia))


RECOVERED = "finextract_recovered"  # folder of FineXtract's generations with the recovered prompt


def recovered_prompt(cfg: ExtractConfig, run_: Run, mode: str, ft: Generator, pre: Generator | None) -> str:
    """The prompt recovered from ``ft`` and its pretrained model (``pre``, or ``ft``'s LoRA off) by
    :func:`modelmine.audit.prompt.recover_prompt`, kept in ``<mode>/recovered_prompt.txt`` (resume)
    with the search's scores in ``<mode>/prompt_search.json``."""
    path = run_.path(mode, "recovered_prompt.txt")
    if path.exists():
        return path.read_text().strip()
    text, history = recover_prompt(ft, pre, cfg.prompt_search, seed=cfg.seed)
    search = {"prompt": text, "score": cfg.prompt_search.score, "scores": history}
    atomic_write_text(run_.path(mode, "prompt_search.json"), json.dumps(search))
    atomic_write_text(path, text + "\n")
    return text


def run(cfg: ExtractConfig, out: Path) -> dict:
    """FineXtract and the CFG baseline on every mode. Writes ``matches.png`` (per mode: training
    images, FineXtract's and the baseline's best candidates), ``<mode>/candidates.safetensors`` and
    ``metrics.json``: ``success_rate`` (the paper's, at ``similarity_threshold``),
    ``calibrated_success_rate`` (at ``calibrated_threshold``, when there are non-members or it is
    given), ``avg_similarity``, ``baseline_*`` (means over the modes), the same prefixed by the mode
    (``lora_``, ``full_``), ``baseline_cfg<s>_*`` for extra baseline scales, both thresholds,
    ``num_generations`` (per method and mode), ``num_train_images``. ``--prompt auto``:
    ``recovered_prompt.txt`` and ``prompt.json``; ``recovered_success_rate`` etc. (FineXtract with the
    recovered prompt) and, when the true prompt is known, the headline rates with it and
    ``prompt_token_accuracy``; when unknown, the headline rates are the recovered prompt's."""
    t0 = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    modes = _check(cfg)
    cfg = _resolve(cfg)
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    size, channels = Generator.geometry(cfg.base)  # without loading the generator in this process
    images, true_prompt, nonmembers = load_train_data(cfg, size, channels)
    cfg = replace(cfg, lora=resolve_steps(cfg.lora, len(images)), full=resolve_steps(cfg.full, len(images)))
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    if cfg.num_generations < len(images):
        raise UserError(f"num_generations ({cfg.num_generations}) must be >= the {len(images)} train images")
    # features and thresholds first: a bad feature name fails before any work
    features = extraction.build_features(cfg.features, min(size, 64), device)
    train_feats = features(images)
    nonmember_feats = None if nonmembers is None else features(nonmembers)
    thresholds = (
        cfg.similarity_threshold,
        extraction.choose_calibrated_threshold(
            cfg.calibrated_threshold, cfg.calibration_quantile, train_feats, nonmember_feats
        ),
    )
    o = str(run_.dir)
    # Several processes: the main one fine-tunes every mode, then all draw their share of the batches.
    # One process: each mode's fine-tune + generation is one task, so the modes run side by side.
    finetune = [Task(task_mode, (cfg, o, m, None, False)) for m in modes] if procs.count > 1 else []
    run_phase(procs, finetune, [], cfg.workers, cfg.threads)
    run_phase(procs, [], [Task(task_mode, (cfg, o, m, procs.shard)) for m in modes], cfg.workers, cfg.threads)
    if not procs.is_main:  # the main process clusters and scores
        return {}

    metrics, rows = {}, []
    for mode in modes:
        mode_metrics, mode_rows = _score_mode(
            cfg, run_, mode, images, features, train_feats, thresholds, true_prompt is not None
        )
        metrics, rows = metrics | mode_metrics, rows + mode_rows
    save_grid(run_.path("matches.png"), torch.cat(rows), nrow=len(images))
    if cfg.prompt == AUTO:
        metrics |= _prompt_report(run_, modes, true_prompt)
    metrics |= _means_over_modes(cfg, metrics, modes)
    similarity_threshold, calibrated_threshold = thresholds
    if calibrated_threshold is not None:
        metrics["calibrated_threshold"] = calibrated_threshold
    return run_.log_metrics(
        **metrics, similarity_threshold=similarity_threshold, num_generations=cfg.num_generations,
        num_train_images=len(images), seconds=time.time() - t0,
    )  # fmt: skip


def _means_over_modes(cfg: ExtractConfig, metrics: dict, modes: list[str]) -> dict[str, float]:
    """The headline rates: each ``<mode>_<name><key>`` metric averaged over the modes, as ``<name><key>``."""
    means = {}
    for key in ["success_rate", "calibrated_success_rate", "avg_similarity", "mia_loss_auc", "mia_pia_auc"]:
        for name in ["", "recovered_", *(f"{b}_" for b in _baselines(cfg))]:
            if f"{modes[0]}_{name}{key}" in metrics:
                means[name + key] = sum(metrics[f"{m}_{name}{key}"] for m in modes) / len(modes)
    return means


def _prompt_report(run_: Run, modes: list[str], true_prompt: str | None) -> dict[str, float]:
    """Collect each mode's recovered prompt into ``recovered_prompt.txt`` (one line per mode, ``mode:
    prompt`` when several) and ``prompt.json`` (recovered per mode, the true prompt or None); with the
    true prompt, ``<mode>_prompt_token_accuracy`` and their mean ``prompt_token_accuracy``."""
    recovered = {m: run_.path(m, "recovered_prompt.txt").read_text().strip() for m in modes}
    lines = [recovered[modes[0]]] if len(modes) == 1 else [f"{m}: {p}" for m, p in recovered.items()]
    atomic_write_text(run_.path("recovered_prompt.txt"), "\n".join(lines) + "\n")
    atomic_write_text(run_.path("prompt.json"), json.dumps({"recovered": recovered, "true": true_prompt}))
    if true_prompt is None:
        return {}
    acc = {f"{m}_prompt_token_accuracy": prompt_token_accuracy(p, true_prompt) for m, p in recovered.items()}
    return acc | {"prompt_token_accuracy": sum(acc.values()) / len(acc)}


def _score_mode(
    cfg: ExtractConfig, run_: Run, mode: str, images, features, train_feats, thresholds, true_known: bool
):
    """Attack each method's generations of ``mode``; returns the ``<mode>_``-prefixed metrics and the
    grid rows (training images ``(N, C, H, W)``, then FineXtract's and the baseline's best
    candidates), and saves the candidates. ``thresholds``: ``(similarity, calibrated or None)``."""
    folders = {"finextract": "finextract"} | {b: f"cfg_{s:g}" for b, s in _baselines(cfg).items()}
    if cfg.prompt == AUTO and true_known:
        folders["recovered"] = RECOVERED
    metrics: dict[str, float] = {}
    rows, saved = [images], {}
    for name, folder in folders.items():
        generated = load_generated(run_, f"{mode}/{folder}", cfg.num_generations, cfg.gen_batch_size)
        x = generated["images"]  # uint8 (M, C, H, W)
        res = extraction.attack(features, x, train_feats, *thresholds)
        prefix = f"{mode}_" if name == "finextract" else f"{mode}_{name}_"
        metrics |= {prefix + key: v for key, v in res["scores"].items()}
        if name == "finextract" and cfg.prompt == AUTO and not true_known:  # attacked with the recovered one
            metrics |= {f"{mode}_recovered_{key}": v for key, v in res["scores"].items()}
        metrics[prefix + "seconds"] = generated["seconds"]
        if name in ("finextract", "baseline"):
            rows.append(extraction.match_rows(images, x, res["best_index"]))
        saved |= {f"{name}_best": res["best"], f"{name}_candidates": x[res["candidates"]]}
    atomic_save_tensors(run_.path(mode, "candidates.safetensors"), saved)
    if (mia := run_.dir / mode / "mia.json").exists():
        metrics |= {f"{mode}_{k}": v for k, v in json.loads(mia.read_text()).items()}
    info_path = run_.dir / mode / "train_info.json"
    if info_path.exists():
        metrics[f"{mode}_train_seconds"] = json.loads(info_path.read_text())["train_seconds"]
    return metrics, rows
