"""TCKR: Text-Conditioned Knowledge Recycling, a private dataset replaced by a synthetic one.

Resmini, Di Martino, et al., "Your Image Generator Is Your New Private Dataset" (arXiv:2504.04582;
official code: github.com/NicoloResmini/TCKR, ``src/run_lora.ipynb``, ``src/evaluate.py``,
``src/mia_lira.ipynb``). The pipeline, one stage per function:

1. Caption every private image (:mod:`modelmine.captioning`) and prompt with ``"<class>: <caption>"``
   (the paper's ``className_and_blip2`` prompt type).
2. LoRA fine-tune the generator's UNet on (image, prompt) pairs with ``E ||eps - eps_theta(z_t, t, c)||^2``
   (:func:`modelmine.diffusion.finetune.train_unet`); the LoRA also covers convolutions and the
   pooled-text projection (``UNET_LORA_TARGETS``), where the embedded UNet takes most of its class.
3. Generate ``N x |private|`` images (``N``: ``cardinality``) from the private prompts, cycled class by
   class so every prefix of the dataset is class-balanced (:func:`cycle_prompts`).
4. Generative knowledge distillation: a student sees *only* synthetic images; each augmented batch
   ``x`` gets targets ``p = softmax(f_T(x))`` from the teacher (trained on the private data) and the
   loss ``CE(f_S(x), (1 - ls) p + ls / K)`` (:func:`modelmine.distill.soft_target_ce`), tested on real
   images at its input size (``student.image_size``). ``student.loss=kd``: Hinton et al.'s KL form.
5. Privacy: LiRA (:mod:`modelmine.audit.lira`) and online RMIA (:mod:`modelmine.audit.rmia`) on the
   teacher and every student, with shared shadow models trained with the teacher's recipe on
   teacher-sized draws from private train + held-out. Members: the private training images;
   non-members: held-out images. ``*_auc`` is one variant on all of them (not the paper's number);
   ``*_auc_paper`` the paper's rule, the best variant on a balanced set (:func:`paper_auc`; the
   official notebook takes 12 variants, 256 shadows, 1,000 + 1,000 points), and ``*_aop`` its
   ``acc / (2 AUC)^2`` (:func:`aop`: no code in the official repository; it reproduces its tables).

Ablations (paper Sec. 4, ``ablations``): the teacher's hard labels, and a second LoRA with class-name
prompts only (``only_className``). Several ``cardinality`` values give the accuracy-vs-AUC trade-off
(paper Fig. 5), smaller ones as prefixes of the largest. Tasks run in ``workers`` processes and save
as they go, so a killed run resumes. Results: ``benchmarks/RESULTS.md`` (TCKR).

| field | paper or official code | why ours differs |
|---|---|---|
| ``captioner`` | BLIP-2 | BLIP-2 needs a download; ``captioner=blip2`` is the paper's |
| ``lora.target_modules`` | UNet attention (diffusers' default) | wider: where the tiny UNet's class enters |
| ``lora.lr``, ``lora.steps`` | 1e-4, 3 epochs, batch 4 | larger: at 1e-4 the tiny UNet drew printed glyphs |
| ``generator``, ``guidance_scale`` | SD 2, 224 px, CFG 2 | the embedded generator's own |
| ``sampler``, ``sample_steps`` | DDIM (diffusers' default for SD 2), 20 steps | DPM-Solver++(2M): its CAS in fewer calls |
| ``cardinality`` | up to 20x (their best students) | smaller: generation dominates a CPU run |
| ``teacher.preset`` | MobileNetV3 (OFA subnet) | the shared teacher of ``modelmine teacher`` |
| ``student.preset``, ``student.loss`` | the teacher's architecture; generative KD | the paper's |
| ``student.image_size`` | the teacher's (224 px images resized down) | the smaller of both: upsampling teaches blur |
| ``student.lr``, ``student.weight_decay``, ``student.augment`` | AdamW 1e-3, wd 5e-5, AugMix, MixUp | the shared recipe |
| ``student.epochs`` | early stop; best *test* epoch | fixed, last kept: choosing on test inflates accuracy |
| ``num_shadows``, ``fix_variance`` | 256 (official) | fewer (CPU); LiRA fixes the variance below 64 |
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..audit import rmia
from ..audit.lira import (
    check_num_models,
    headline_variant,
    keep_masks,
    note_low_fpr,
    query_views,
    score_target,
    shifted_views,
    train_shadows,
)
from ..captioning import captions_for, tckr_prompts
from ..classifiers import check_compatible, evaluate, load_classifier, predict_logits, taking_any_size
from ..config import Workers
from ..data import (
    ImageSet,
    Splits,
    describe_members,
    fit_to,
    quantize,
    read_caption_list,
    resolve,
    save_image_folder,
)
from ..diffusion.finetune import LoraSettings, TrainSettings, finetune_or_load
from ..diffusion.generator import (
    Generator,
    GeneratorOptions,
    check_dtype,
    check_serves,
    embedded_for,
    open_generator,
)
from ..diffusion.sampler import sample
from ..distill import TCKR_STUDENT, StudentConfig, resolve_student_size, save_student, train_student
from ..distributed import Shard, processes, resolve_device
from ..errors import UserError
from ..metrics import membership_metrics, roc_auc, roc_curve
from ..report import plot_roc, plot_tradeoff, save_grid
from ..runs import (
    GENERATION_STRIDE,
    Run,
    Task,
    atomic_save_tensors,
    atomic_write_text,
    item_seed,
    load_generated,
    run_phase,
    run_tasks,
    synthesize_batches,
)
from ..teacher import TeacherConfig, load_teacher, obtain_teacher, resolve_teacher

VARIANTS = ("caption", "fixed")  # "<class>: <caption>" prompts, and the class-name-only ablation


@dataclass
class TckrConfig(GeneratorOptions, Workers):
    """`modelmine tckr`: private data -> captions -> LoRA -> synthetic data -> student -> LiRA."""

    data: str = "digits"  # private data: a built-in dataset (digits, mnist5k) or an ImageFolder (+ captions)
    test_data: str | None = None  # real test set; default: digits test (or 20% of --data)
    heldout_data: str | None = None  # LiRA non-members; default: digits held-out (or the test split)
    generator: str = (
        "embedded"  # "embedded" (grey or RGB, as the data), an embedded .safetensors, an SD folder
    )
    captioner: str = "attributes"  # for images without captions: attributes, class_name, blip2[:path]
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    cardinality: list[float] = field(default_factory=lambda: [1.0])  # N: synthetic = N x |private|
    sample_steps: int = 10  # steps of `sampler`
    guidance_scale: float | None = None  # CFG scale; None: the generator's stored default (1.5 embedded)
    gen_batch_size: int = 128
    # the paper's generative KD (soft-target CE, T=1, smoothing 0.1, teacher on each augmented batch);
    # `--set student.loss=kd --set student.temperature=4 --set student.teacher_on_augmented=false` is
    # the KL variant measured beside it
    student: StudentConfig = field(default_factory=lambda: StudentConfig(**TCKR_STUDENT))
    ablations: bool = True  # hard-label and fixed-prompt students
    num_shadows: int = 16
    # LiRA variance of the headline AUCs: None = fixed below 64 shadows (Carlini et al.), per-example
    # from 64; every variant is saved in lira/*.safetensors
    fix_variance: bool | None = None
    seed: int = 0


# ------------------------------------------------------------------------------------------------
# pure pieces
# ------------------------------------------------------------------------------------------------
def cycle_prompts(
    prompts: Sequence[str], labels: torch.Tensor, n: int, seed: int = 0
) -> tuple[list[str], torch.Tensor]:
    """``n`` generation prompts from the private ones (``labels`` ``(M,)``): position ``j`` takes the
    next prompt of class ``j mod K`` (each class's prompts shuffled, then cycled), so every prefix
    is class-balanced and each private prompt is used ``n / M`` times on average.

    Returns ``(prompts, labels (n,))``.
    """
    rng = random.Random(seed)
    labels_l = torch.as_tensor(labels).tolist()
    classes = sorted(set(labels_l))
    per_class = {c: [i for i, y in enumerate(labels_l) if y == c] for c in classes}
    for idx in per_class.values():
        rng.shuffle(idx)
    out, out_labels = [], []
    for j in range(n):
        c = classes[j % len(classes)]
        idx = per_class[c]
        out.append(prompts[idx[(j // len(classes)) % len(idx)]])
        out_labels.append(c)
    return out, torch.tensor(out_labels, dtype=torch.long)


def num_synthetic(cardinality: float, num_private: int) -> int:
    return max(1, int(round(cardinality * num_private)))


def balanced_challenge(is_member: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Indices ``(2m,)`` of a balanced challenge set: every image of the smaller side (members or
    non-members, ``m`` of them) and as many of the other side drawn at random (seeded)."""
    members, others = is_member.nonzero().flatten(), (~is_member).nonzero().flatten()
    small, big = (members, others) if len(members) <= len(others) else (others, members)
    pick = big[torch.randperm(len(big), generator=torch.Generator().manual_seed(seed))[: len(small)]]
    return torch.cat([small, pick]).sort().values


def paper_auc(scores: dict[str, torch.Tensor], is_member: torch.Tensor, seed: int = 0) -> float:
    """TCKR's privacy number: the best AUC over the LiRA variants (here online/offline x global/per-
    example variance), on a :func:`balanced_challenge` set. A maximum over attacks: an upper estimate."""
    index = balanced_challenge(is_member, seed)
    return max(roc_auc(sc[index], is_member[index]) for sc in scores.values())


def aop(acc: float, auc: float) -> float:
    """TCKR's Accuracy Over Privacy, ``acc / (2 AUC)^2``: the accuracy, divided by 1 at chance AUC 0.5
    and by up to 4 for a perfect attack."""
    return acc / (2 * auc) ** 2


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def load_private(cfg: TckrConfig, size: int, channels: int | None = None) -> Splits:
    """The private data's splits at ``size`` (:func:`modelmine.data.resolve`; train = the members)."""
    return resolve(
        cfg.data, size, channels, test_data=cfg.test_data, heldout_data=cfg.heldout_data, seed=cfg.seed
    )


def _prompts(cfg: TckrConfig, run_dir: Path, train, device: torch.device | str) -> dict[str, list[str]]:
    """Per variant, one fine-tuning prompt per private image (captions cached in ``captions.json``;
    a model captioner runs on ``device`` in the generator's ``cfg.dtype``)."""

    path = run_dir / "captions.json"
    if path.exists():
        captions = read_caption_list(path)
    else:
        # kept, so a resumed run fine-tunes on the same captions and the audit of its generator
        # (``modelmine audit generator``) prompts with them, one per member of split.json
        captions = captions_for(train, cfg.captioner, device=device, dtype=check_dtype(cfg.dtype))
        atomic_write_text(path, json.dumps(captions))
    if len(captions) != len(train):
        raise UserError(f"{path} has {len(captions)} captions for {len(train)} images; delete it")
    names = train.class_names
    return {
        "caption": tckr_prompts(names, train.labels, captions),
        "fixed": [names[y] for y in train.labels.tolist()],
    }


# ------------------------------------------------------------------------------------------------
# tasks (module-level, so worker processes can run them)
# ------------------------------------------------------------------------------------------------
def task_generate(cfg: TckrConfig, out: str, variant: str, n: int, shard: Shard | None = None) -> dict:
    """Fine-tune a LoRA on the ``variant`` prompts (``lora_<variant>/``), then generate ``n`` images
    into ``generated_<variant>/`` batch by batch (only ``shard``'s batches, when given). Resumes
    from both; with ``n = 0`` it only fine-tunes."""

    run_ = Run(out)
    device = resolve_device(cfg.device)
    gen = open_generator(cfg.generator, cfg, device)
    train = load_private(cfg, gen.image_size, gen.channels).train
    prompts = _prompts(cfg, run_.dir, train, device)[variant]
    settings = TrainSettings.from_lora(cfg.lora, cfg.seed)
    gen, info = finetune_or_load(
        gen, run_.dir / f"lora_{variant}", "lora", train.images, prompts, settings,
        checkpoint=run_.path(f"lora_{variant}.ckpt.pt"), device=device,
    )  # fmt: skip
    gen_prompts, gen_labels = cycle_prompts(prompts, train.labels, n, cfg.seed)
    bs = cfg.gen_batch_size

    @torch.inference_mode()
    def make_batch(i: int) -> dict[str, torch.Tensor]:
        chunk = gen_prompts[i * bs : (i + 1) * bs]
        images = sample(
            gen,
            chunk,
            steps=cfg.sample_steps,
            cfg=cfg.guidance_scale,
            seed=item_seed(cfg.seed, i, stride=GENERATION_STRIDE),
        )
        return {"images": quantize(images.float().cpu()), "labels": gen_labels[i * bs : (i + 1) * bs]}

    synthesize_batches(run_, math.ceil(n / bs), make_batch, folder=f"generated_{variant}", shard=shard)
    return info


def task_teacher(cfg: TckrConfig, out: str) -> None:

    train = load_private(cfg, cfg.teacher.image_size).train
    obtain_teacher(cfg.teacher, Path(out), train, resolve_device(cfg.device))


def task_shadows(cfg: TckrConfig, out: str, rows: list[int]) -> None:
    """Train LiRA shadow models ``rows`` (files in ``shadows/``)."""

    population, is_member = load_private(cfg, cfg.teacher.image_size).population()
    check_num_models(cfg.num_shadows, ["lira"])
    keep = keep_masks(cfg.num_shadows, is_member, cfg.seed)  # each trains on |train| images, like the teacher
    views = shifted_views(population.images)
    train_shadows(
        population, keep, cfg.teacher, Path(out) / "shadows", views, resolve_device(cfg.device),
        progress=False, rows=rows,
    )  # fmt: skip


def labelled_synthetic(cfg: TckrConfig, out: str | Path, teacher, info, variant: str, n: int, device):
    """The first ``n`` ``variant`` images at the student's input size ``(n, C, S, S)``, their prompt
    classes ``(n,)``, the teacher's softmax on them at its own size ``(n, K)`` and the generation
    seconds."""

    b = load_generated(Run(out), f"generated_{variant}", n, cfg.gen_batch_size, keys=("images", "labels"))
    images, prompt_labels, seconds = b["images"], b["labels"], b["seconds"]
    at_teacher = fit_to(images, info.image_size, info.in_channels)  # (n, C, H, W)
    probs = predict_logits(teacher, at_teacher, device=device).softmax(1)
    images = fit_to(images, cfg.student.image_size or info.image_size, info.in_channels)
    return images, prompt_labels, probs, seconds


def task_student(cfg: TckrConfig, out: str, plan: StudentPlan) -> None:
    """Train the student of ``plan`` (``students/<name>.safetensors``)."""

    path = Path(out) / "students" / f"{plan.name}.safetensors"
    if path.exists():
        return
    device = resolve_device(cfg.device)
    teacher, info = load_teacher(cfg.teacher, out)
    images, prompt_labels, probs, _ = labelled_synthetic(
        cfg, out, teacher, info, plan.variant, plan.n, device
    )
    # the hard-label ablation learns the class each image was generated for (the paper's baseline),
    # not the teacher's argmax
    recipe = replace(cfg.student, hard_labels=plan.hard)
    student, student_info = train_student(
        recipe,
        info,
        images,
        probs,
        teacher,
        labels=prompt_labels if plan.hard else None,
        seed=cfg.seed,
        device=device,
    )
    save_student(path, student, student_info)


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudentPlan:
    """One TCKR student: trained on the first ``n`` images of ``variant`` ("caption" or "fixed") with
    the teacher's soft labels, or with the prompted class (``hard``); saved as
    ``students/<name>.safetensors``, reported under metric keys ``<prefix>...``."""

    name: str
    variant: str
    n: int
    hard: bool
    prefix: str
    cardinality: float | None = None  # the soft-label students' N; None for the ablations


def student_plan(cfg: TckrConfig, num_private: int) -> list[StudentPlan]:
    """One soft-label student per cardinality, and at the headline (largest) cardinality the
    hard-label and fixed-prompt ablations."""
    cards = sorted(set(cfg.cardinality))
    top = num_synthetic(cards[-1], num_private)
    plan = [
        StudentPlan(f"soft_x{c:g}", "caption", num_synthetic(c, num_private), False, f"student_x{c:g}_", c)
        for c in cards
    ]
    if cfg.ablations:
        plan += [
            StudentPlan("hard", "caption", top, True, "student_hard_"),
            StudentPlan("fixed_prompt", "fixed", top, False, "student_fixed_prompt_"),
        ]
    return plan


def _check(cfg: TckrConfig) -> None:
    if not cfg.cardinality or min(cfg.cardinality) <= 0:
        raise UserError(f"cardinality must be a list of positive numbers, got {cfg.cardinality}")
    if cfg.workers < 1:
        raise UserError(f"workers must be >= 1, got {cfg.workers}")


def _synthesize(cfg: TckrConfig, o: str, procs, top: int, variants: list[str]) -> None:
    """Phase 1: the LoRA fine-tune + generate chains, the teacher and the shadows, in parallel.

    One process: each chain is one task. Launched as several processes: the LoRAs and the teacher
    once on the main process while every process trains its share of the shadows, then every
    process generates its share of the batches with the LoRAs.
    """

    ids = procs.shard.items(cfg.num_shadows)  # all of them, unless launched as several processes
    chunk = max(1, math.ceil(len(ids) / (2 * max(1, cfg.workers))))
    shadows = [Task(task_shadows, (cfg, o, ids[i : i + chunk])) for i in range(0, len(ids), chunk)]
    teacher = [Task(task_teacher, (cfg, o))]
    if procs.count == 1:
        run_phase(procs, [Task(task_generate, (cfg, o, v, top)) for v in variants] + teacher, shadows,
                  cfg.workers, cfg.threads)  # fmt: skip
        return
    run_phase(procs, [Task(task_generate, (cfg, o, v, 0)) for v in variants] + teacher, shadows,
              cfg.workers, cfg.threads)  # fmt: skip
    run_phase(procs, [], [Task(task_generate, (cfg, o, v, top, procs.shard)) for v in variants],
              cfg.workers, cfg.threads)  # fmt: skip


def run(cfg: TckrConfig, out: Path) -> dict:
    """The whole pipeline; writes ``synthetic/`` (generated images only), ``split.json`` (which
    private images are members and which non-members), students, LiRA scores, ``samples.png``,
    ``tradeoff.png``, ``roc.png`` and ``metrics.json``."""

    t_start = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    _check(cfg)
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg = resolve_teacher(cfg, cfg.data, cfg.test_data)
    splits = load_private(cfg, cfg.teacher.image_size)
    train, test, heldout = splits.train, splits.test, splits.heldout
    cfg = replace(cfg, generator=embedded_for(cfg.generator, train.images.shape[1]))
    gen_size, gen_channels = Generator.geometry(cfg.generator)  # read once, from its config files
    cfg = replace(cfg, student=resolve_student_size(cfg.student, cfg.teacher.image_size, gen_size))
    if len(train) < 2:
        raise UserError("TCKR needs at least 2 private training images")
    # the LoRA is fine-tuned on the private images themselves: RGB ones on a grey generator stop here
    check_serves(gen_channels, train.images.shape[1], cfg.generator)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    if cfg.teacher.path is not None:
        _, info = load_classifier(cfg.teacher.path, cfg.teacher.preset)
        check_compatible(info, train.image_shape, train.num_classes, "private data")
    with procs.main_first():  # caption once, before the workers (and other processes) need them
        _prompts(cfg, run_.dir, train, device)
        split = {"members": describe_members(train), "nonmembers": describe_members(heldout)}
        atomic_write_text(run_.dir / "split.json", json.dumps(split))
    plan = student_plan(cfg, len(train))
    top = max(p.n for p in plan)
    o = str(run_.dir)
    t0 = time.time()
    _synthesize(cfg, o, procs, top, ["caption", "fixed"] if cfg.ablations else ["caption"])
    if not procs.is_main:  # the main process trains the students and runs the audit
        return {}
    phase1, t0 = time.time() - t0, time.time()
    run_tasks([Task(task_student, (cfg, o, p)) for p in plan], cfg.workers, cfg.threads)
    phase2 = time.time() - t0

    teacher, info = load_teacher(cfg.teacher, o)
    check_compatible(info, test.image_shape, test.num_classes, "test data")
    images, prompt_labels, probs, gen_seconds = labelled_synthetic(
        cfg, o, teacher, info, "caption", top, device
    )
    _write_synthetic(run_, images, prompt_labels, probs, list(info.class_names))
    metrics = _audit(cfg, run_, teacher, info, plan, test, device)
    if cfg.ablations:
        _, fixed_labels, fixed_probs, _ = labelled_synthetic(cfg, o, teacher, info, "fixed", top, device)
        metrics["fixed_prompt_teacher_agreement"] = (
            (fixed_probs.argmax(1) == fixed_labels).float().mean().item()
        )
    lora_info = json.loads((run_.dir / "lora_caption" / "train_info.json").read_text())
    return run_.log_metrics(
        **metrics, cardinality=max(cfg.cardinality), num_synthetic=top, num_private=len(train),
        synthetic_teacher_agreement=(probs.argmax(1) == prompt_labels).float().mean().item(),
        lora_seconds=lora_info["train_seconds"], generation_seconds=gen_seconds, phase1_seconds=phase1,
        phase2_seconds=phase2, num_shadows=cfg.num_shadows, total_seconds=time.time() - t_start,
    )  # fmt: skip


def _write_synthetic(run_, images, prompt_labels, probs, class_names: list[str]) -> None:
    """``synthetic/`` (generated images with the teacher's labels and soft labels) and ``samples.png``."""

    def write() -> dict:
        dataset = ImageSet(images, probs.argmax(1), class_names)
        for i in range(0, len(images), 2048):
            save_image_folder(run_.dir / "synthetic", dataset.subset(range(i, min(i + 2048, len(images)))),
                              probs[i : i + 2048], start=i)  # fmt: skip
        order = torch.cat([torch.nonzero(prompt_labels == c).squeeze(1)[:8] for c in range(len(class_names))])
        save_grid(run_.path("samples.png"), images[order], nrow=8)
        return {}

    run_.stage("synthetic", write)


def _audit(cfg: TckrConfig, run_, teacher, info, plan, test, device) -> dict:
    """LiRA and RMIA on the teacher and every student with one set of shadows; ``roc.png``, ``tradeoff.png``."""

    population, is_member = load_private(cfg, info.image_size).population()
    views = shifted_views(population.images)
    keep = keep_masks(cfg.num_shadows, is_member, cfg.seed)  # as task_shadows: |train| images each
    shadow_logits = train_shadows(population, keep, cfg.teacher, run_.path("shadows"), views, device, False)
    headline = headline_variant(cfg.num_shadows, cfg.fix_variance)
    fprs = note_low_fpr(int((~is_member).sum()))

    def audit(model: torch.nn.Module, prefix: str) -> tuple[dict, torch.Tensor]:
        logits = query_views(model, views, device)
        scores = score_target(logits, population.labels, shadow_logits, keep)
        rm = rmia.score_target(logits, population.labels, shadow_logits, keep, ~is_member)
        atomic_save_tensors(
            run_.path("lira", f"{prefix}scores.safetensors"),
            {**scores, **{f"rmia_{k}": v for k, v in rm.items()}, "is_member": is_member},
        )
        acc = evaluate(model, test.images, test.labels, device=device)
        m = {f"{prefix}acc": acc, **membership_metrics(scores[headline], is_member, prefix, fprs)}
        m[f"{prefix}auc_paper"] = paper_auc(scores, is_member, cfg.seed)
        m[f"{prefix}aop"] = aop(acc, m[f"{prefix}auc_paper"])
        m |= membership_metrics(rm["online"], is_member, f"{prefix}rmia_", fprs)
        return m, scores[headline]

    metrics, sc = audit(teacher, "teacher_")
    curves = {"teacher": roc_curve(sc, is_member)}
    points = [("teacher (real data)", metrics["teacher_auc"], metrics["teacher_acc"])]
    top = max(p.n for p in plan)
    for p in plan:
        student = taking_any_size(*load_classifier(run_.dir / "students" / f"{p.name}.safetensors"))
        m, sc = audit(student, p.prefix)
        metrics |= m
        if p.cardinality is not None:
            points.append((f"student x{p.cardinality:g}", m[f"{p.prefix}auc"], m[f"{p.prefix}acc"]))
            if p.n == top:
                metrics |= {k.replace(p.prefix, "student_", 1): v for k, v in m.items()}
                curves[f"student x{max(cfg.cardinality):g}"] = roc_curve(sc, is_member)
    metrics["shadow_train_size"] = int(keep[0].sum())
    plot_roc(run_.path("roc.png"), curves, "LiRA: teacher vs TCKR student")
    plot_tradeoff(run_.path("tradeoff.png"), points, "TCKR: accuracy vs membership-inference AUC")
    return metrics
