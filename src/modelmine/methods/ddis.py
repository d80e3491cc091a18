"""DDIS: data-free image synthesis from a BatchNorm classifier and a text-to-image diffusion model.

arXiv:2506.15381: the classifier's BatchNorm statistics and decisions steer a pretrained generator to
its private domain. Official code github.com/kdst-team/DDIS (``DDIS_code/main_ddis.py``, ``config.py``;
its helper ``p2p/ptp_utils_distG.py`` is unpublished, so DAG follows the token-training loop).

**Domain Alignment Guidance (DAG)**, the paper's form (``dag_input="x_t"``): at every sampling step
but the last (official), ``x = D(z_t)`` (VAE decode, or [-1, 1] -> [0, 1] clamped) is resized to the
classifier's input and run with hooks on every BatchNorm layer ``l`` (:mod:`modelmine.bn_statistics`):

    L_BN = sum_l ||mu_l(x) - mu_l||_2 + ||sigma^2_l(x) - sigma^2_l||_2
    z_t <- z_t - s_t * g / rms(g),   g = grad_{z_t} L_BN,   s_t = dag_step * sqrt(a_{t-1} - a_t)

and the UNet with CFG predicts at the corrected ``z_t`` (:class:`~modelmine.diffusion.guidance.CorrectXt`).
Normalised, because a raw gradient's size depends on the teacher, its layers, the batch and image size;
``s_t`` (:func:`dag_step_sizes`; ``a`` = ``alphas_cumprod``) follows the generator's schedule alone.
``dag_input="x0_hat"``: ``eps <- eps + sqrt(1 - a_t) * dag_scale * grad_{z_t} L_BN(D(x0_hat))`` after
CFG, every step (:class:`~modelmine.diffusion.guidance.LossGradient`).

**Class Alignment Token (CAT)**: a new token ``S_c`` per class in ``"a S_c <class>"`` (the paper's
"A {S_c} {class name}"), started at ``cat_init``'s embedding, trained alone on the classifier's
cross-entropy of DAG-guided samples (``cat_with_dag``; official, Fig. 2) through the last denoising
step, new noise each update; a class stops once ``cat_stop_acc`` of its batch is classified as it.
One that never does keeps its lowest-loss token (``cat_keep="best"``, official); ``"start"`` gives it
its start back instead (such a token may only have learned details that lower the classifier's loss,
not the class), ``"last"`` the last update. Not applied: the official clamp of token rows.

Ablations, same seeds and noise: ``plain`` (``"a <class>"``, no DAG), ``dag_only``, ``cat_only`` (own
tokens, no DAG); each trains a KD student, scored with FID, k-NN precision/recall and IS on a
``feature_preset`` classifier fitted to half the real images, against the other half.

| field | paper or official code | why ours differs |
|---|---|---|
| ``dag_input`` | the noisy ``z_t``, before the UNet (paper) | the paper's; ``"x0_hat"`` an option |
| ``dag_step`` | raw ``5e-4 * grad`` (``lambda_bn * 0.01 * grad_scale``, official) | normalised (above) |
| ``dag_norm`` | squared norms (paper); unsquared (official) | official; ``squared_l2`` the paper's |
| ``guidance_scale`` | 10, on SD 2.1 at 512 px | each generator's own stored scale |
| ``cat_lr`` | AdamW 1e-4, decay 1e-2 (official); 5e-3 (paper) | larger: 64-wide embeddings barely move |
| ``cat_iters`` | 15 updates (official); 30 epochs x 20 (paper) | CPU budget |
| ``cat_per_class`` | 10 images of one class (official); 20 accumulations (paper) | all classes per update |
| ``sampler``, ``sample_steps``, ``cat_steps`` | DDIM, 30 steps, with DAG (official) | official; fewer ``cat_steps`` for cost |
| ``cat_stop_acc`` | 70% of an epoch's images | the same rule per class, as classes train together |
| ``cat_keep`` | the lowest-loss token (official) | official; ``"start"``, ``"last"`` options |
| ``student.image_size`` | the teacher's | the generator's if smaller: upsampled images teach blur |
| ``feature_preset`` | Inception-v3 features for FID and IS | no download; so ``fid`` is not the paper's quantity |
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..bn_statistics import BNStatistics, require_batchnorm
from ..classifiers import (
    ClassifierInfo,
    build_classifier,
    evaluate,
    load_classifier,
    predict_logits,
    save_classifier,
    taking_any_size,
    train_classifier,
)
from ..config import Workers
from ..data import ImageSet, load_image_folder, quantize, resolve, save_image_folder, split_holdout
from ..diffusion.generator import (
    Generator,
    GeneratorOptions,
    embedded_for,
    note_grey_for_colour,
    open_generator,
)
from ..diffusion.guidance import CorrectXt, LossGradient
from ..diffusion.sampler import sample, sampler_timesteps
from ..diffusion.tokens import (
    add_placeholder_tokens,
    load_learned_embeds,
    note_new_words,
    restore_other_rows,
    save_learned_embeds,
    token_parameter,
    unknown_words,
)
from ..distill import StudentConfig, resolve_student_size, save_student, train_student
from ..distributed import Shard, processes, resolve_device
from ..errors import UserError
from ..metrics import classifier_features, frechet_distance, inception_score, precision_recall
from ..report import class_grid_index, save_grid
from ..runs import (
    GENERATION_STRIDE,
    Run,
    Task,
    atomic_write_text,
    item_seed,
    load_generated,
    run_phase,
    run_tasks,
    synthesize_batches,
)
from ..teacher import TeacherConfig, load_teacher, open_data_free_run, teacher_channels

if TYPE_CHECKING:
    from ..diffusion.guidance import Guide


@dataclass(frozen=True)
class Variant:
    """One generator of the DDIS ablation: which guidance it uses and the prefix of its metric keys."""

    dag: bool
    cat: bool
    prefix: str


VARIANTS = {
    "ddis": Variant(dag=True, cat=True, prefix=""), "plain": Variant(dag=False, cat=False, prefix="plain_"),
    "dag_only": Variant(dag=True, cat=False, prefix="dag_only_"),
    "cat_only": Variant(dag=False, cat=True, prefix="cat_only_"),
}  # fmt: skip


@dataclass
class DdisConfig(GeneratorOptions, Workers):
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)  # the CAKE / DeepInversion recipe
    data: str = "digits"  # the private data the default teacher trains on (built-in name or folder)
    test_data: str | None = None  # real test ImageFolder; none: the test split of `data`
    generator: str = (
        "embedded"  # "embedded" (grey or RGB, as the teacher), an embedded .safetensors, an SD folder
    )
    dag: bool = True
    cat: bool = True
    ablations: bool = True  # also plain, dag_only, cat_only
    num_images: int = 1000  # per variant, classes balanced
    batch_size: int = 100
    # the official DDIM at 30 steps: at 10 DPM-Solver++(2M) steps DAG corrects 9 states instead of 29
    # and the student lost 2.5 points (benchmarks/RESULTS.md, DDIS)
    sampler: Literal["ddim", "dpmpp_2m"] = "ddim"
    sample_steps: int = 30
    guidance_scale: float | None = None  # None: the generator's stored default
    # the plain ablation's prompt, {c} = class name; None: "a {c}", CAT's prompt without its token,
    # so the ablation differs from CAT by the token alone
    plain_prompt: str | None = None
    # Domain Alignment Guidance acts on "x_t" (paper, official code: the noisy sample is corrected
    # before the UNet, every step but the last, RMS dag_step x the noise that step removes) or on
    # "x0_hat" (the gradient on the clean estimate added to the prediction after CFG, every step,
    # scale dag_scale)
    dag_input: Literal["x_t", "x0_hat"] = "x_t"
    dag_step: float = 1.0  # x_t only
    dag_scale: float = 2.0  # x0_hat only
    # L_BN's norms: "l2" (official code) or "squared_l2" (the paper's equation)
    dag_norm: Literal["l2", "squared_l2"] = "l2"
    cat_init: str = "a"  # the word whose embedding every CAT token starts from (official initializer_token)
    cat_lr: float = 5e-2
    cat_iters: int = 40
    cat_per_class: int = 8
    cat_steps: int = 10
    cat_grad_steps: int = 1  # denoising steps the CE gradient flows through (paper: the last one)
    cat_stop_acc: float = 0.7
    # a class that never stops keeps its starting embedding ("start": a token the classifier never
    # accepted carries no class), its lowest-loss token ("best", official) or the last update's
    cat_keep: Literal["start", "best", "last"] = "best"
    cat_with_dag: bool = True  # tokens trained on DAG-guided samples (paper Fig. 2, official code)
    feature_preset: str = "cnn_small"  # the metric classifier (trained on the private data)
    seed: int = 0


# ------------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------------
def balanced_targets(n: int, num_classes: int) -> torch.Tensor:
    """``(n,)`` class targets ``0, 1, ..., K-1, 0, 1, ...`` (every batch of K is balanced)."""
    return torch.arange(n) % num_classes


def cat_tokens(num_classes: int) -> list[str]:
    return [f"<cat-{k}>" for k in range(num_classes)]


def cat_prompts(targets: torch.Tensor, class_names: list[str]) -> list[str]:
    """The paper's ``"A {S_c} {class name}"`` for each target ``(B,)``."""
    toks = cat_tokens(len(class_names))
    return [f"a {toks[c]} {class_names[c]}" for c in targets.tolist()]


PLAIN_PROMPT = "a {c}"  # cat_prompts without the token


def plain_prompts(targets: torch.Tensor, class_names: list[str], template: str) -> list[str]:
    return [template.format(c=class_names[c]) for c in targets.tolist()]


DAG_INSTEAD = "run with --set dag=false (CAT only) or use `modelmine cake`"


def dag_step_sizes(gen, steps: int, step: float = 1.0) -> dict[int, float]:
    """The x_t form's correction size (its RMS) per sampling timestep ``t`` (of the generator's
    sampler): ``step * sqrt(a_{t-1} - a_t)``, the difference in noise variance between two adjacent
    *training* timesteps (``a`` = ``alphas_cumprod``). The last step is left out, as in the official code."""

    timesteps = sampler_timesteps(gen, steps)
    a = gen.scheduler.alphas_cumprod.to(torch.float64)
    gap = {t: float(a[t - 1] - a[t]) if t >= 1 else float(1 - a[0]) for t in timesteps[:-1]}
    return {t: step * math.sqrt(max(v, 0.0)) for t, v in gap.items()}


def dag_guidance(
    classifier: nn.Module,
    dag_input: Literal["x_t", "x0_hat"] = "x_t",
    *,
    steps: int | None = None,
    step: float = 1.0,
    scale: float = 2.0,
    squared: bool = False,
) -> Guide:
    """DAG as a sampler guide: the BatchNorm-statistics loss of ``classifier`` (eval mode) on decoded images.

    ``"x_t"`` (the paper's): before the UNet, ``x_t <- x_t - s_t * g / rms(g)`` with ``g`` the
    gradient of the loss on ``decode(x_t)`` and ``s_t`` from :func:`dag_step_sizes` for ``steps``
    sampling steps and ``step`` (the last step uncorrected). ``"x0_hat"``: the loss on the decoded
    clean estimate, its gradient added to the prediction with ``scale``
    (:class:`~modelmine.diffusion.guidance.LossGradient`), on every step. ``squared``: the paper's
    L_BN with squared norms (default: the official unsquared ones). No BatchNorm: a one-line error.
    """

    classifier.eval()
    stats = BNStatistics(classifier, "DAG", DAG_INSTEAD, deferred=True)  # keeps DAG's rounding

    def bn_loss(images: torch.Tensor, t: int) -> torch.Tensor:  # images (B, C, H, W) in [0, 1]
        with stats:
            classifier(images)
        return stats.loss(squared=squared)

    if dag_input == "x0_hat":
        return LossGradient(bn_loss, scale)
    if steps is None:
        raise ValueError("DAG on x_t needs the number of sampling steps: its step sizes follow the schedule")

    def guide(eps_fn, gen, c):  # the step sizes need the generator's schedule
        return CorrectXt(bn_loss, dag_step_sizes(gen, steps, step), normalize=True)(eps_fn, gen, c)

    return guide


def dag_guides(classifier: nn.Module, cfg: DdisConfig, steps: int) -> list[Guide]:
    """The DAG guide of ``cfg`` (``dag_input``, ``dag_step``, ``dag_scale``, ``dag_norm``) for ``steps``
    sampling steps."""
    squared = cfg.dag_norm == "squared_l2"
    return [
        dag_guidance(
            classifier, cfg.dag_input, steps=steps, step=cfg.dag_step, scale=cfg.dag_scale, squared=squared
        )
    ]


def _add_cat_tokens(gen, k: int, cat_init: str) -> list[int]:
    """Add the ``k`` CAT tokens to ``gen``, each starting at the embedding of the word ``cat_init``
    (official: "a"); returns their ids."""
    ids = add_placeholder_tokens(gen, cat_tokens(k))
    emb = gen.text_encoder.get_input_embeddings().weight
    init = gen.tokenizer(cat_init, add_special_tokens=False).input_ids
    if len(init) != 1 or init[0] == gen.tokenizer.unk_token_id:
        raise UserError(f"cat_init '{cat_init}' must be one word the generator's tokenizer knows")
    with torch.no_grad():
        emb[ids] = emb[init[0]].clone()
    return ids


class _KeptTokens:
    """What ``cat_keep`` gives the classes that never stop: each token's start, or the rows it was
    sampled with when its class's mean cross-entropy was lowest."""

    def __init__(self, reference: torch.Tensor, ids: list[int]):
        self.ids = torch.tensor(ids)
        self.start = reference[self.ids].clone()  # (K, D): the token rows only
        self.best = self.start.clone()
        self.best_loss = torch.full((len(ids),), math.inf)

    def observe(self, per_class: torch.Tensor, active: torch.Tensor, reference: torch.Tensor) -> None:
        """``per_class`` ``(K,)`` losses of images sampled with ``reference``'s rows."""
        better = active & (per_class < self.best_loss)
        self.best_loss = torch.where(better, per_class, self.best_loss)
        self.best[better] = reference[self.ids[better]].to(self.best)

    @torch.no_grad()
    def finish(self, weight: torch.Tensor, active: torch.Tensor, keep: str) -> None:
        if keep != "last":  # classes that never stopped
            weight[self.ids[active]] = (self.best if keep == "best" else self.start)[active].to(weight)


def train_class_tokens(
    gen,
    classifier: nn.Module,
    class_names: list[str],
    cfg: DdisConfig,
    log=None,
    guidance: Sequence[Guide] = (),
) -> dict:
    """Learn one CAT embedding per class (new tokens added to ``gen``); returns a training summary.

    Each iteration samples ``cat_per_class`` images for every still-active class with
    ``cat_steps`` sampling steps and the graph kept through the last one, and takes an Adam step on the
    token rows with the classifier's cross-entropy. A class whose batch is at least
    ``cat_stop_acc`` classified as the class is frozen (early stop).
    """

    k = len(class_names)
    ids = _add_cat_tokens(gen, k, cfg.cat_init)
    weight = token_parameter(gen, ids)
    reference = weight.detach().clone()
    kept = _KeptTokens(reference, ids)
    opt = torch.optim.Adam([weight], lr=cfg.cat_lr)
    active = torch.ones(k, dtype=torch.bool)
    history, it = [], 0
    for it in range(cfg.cat_iters):
        classes = torch.nonzero(active).squeeze(1)
        if len(classes) == 0:
            break
        targets = classes.repeat(cfg.cat_per_class)
        images = sample(
            gen, cat_prompts(targets, class_names), steps=cfg.cat_steps, cfg=cfg.guidance_scale,
            seed=item_seed(cfg.seed, it, stride=7919), grad_steps=cfg.cat_grad_steps, guidance=guidance,
        )  # fmt: skip
        logits = classifier(images)
        per_image = F.cross_entropy(logits, targets.to(logits.device), reduction="none")
        loss = per_image.mean()
        per_class = torch.zeros(k).index_add_(0, targets, per_image.detach().cpu()) / cfg.cat_per_class
        kept.observe(per_class, active, reference)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hit = (logits.argmax(1).cpu() == targets).float()
        acc = torch.zeros(k).index_add_(0, targets, hit) / cfg.cat_per_class
        with torch.no_grad():
            done = active & (acc >= cfg.cat_stop_acc)
            # rows of classes that stopped keep the values that reached the threshold *before* this
            # step's update: restore them from the reference taken before the step
            restore_other_rows(
                gen, [ids[c] for c in torch.nonzero(active & ~done).squeeze(1).tolist()], reference
            )
            reference = weight.detach().clone()
        active &= ~done
        history.append(
            {"iter": it, "loss": loss.item(), "active": int(active.sum()), "acc": acc[classes].mean().item()}
        )
        if log is not None:
            log(history[-1])
    kept.finish(weight, active, cfg.cat_keep)
    return {"cat_iters": it + 1, "cat_classes_stopped": int((~active).sum()), "cat_history": history,
            "cat_best_loss": kept.best_loss.tolist()}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# tasks (module-level: worker processes run them)
# ------------------------------------------------------------------------------------------------
def _load(cfg: DdisConfig, out: Path):
    """``(generator, teacher, info)`` in eval mode, the teacher frozen."""

    device = resolve_device(cfg.device)
    gen = open_generator(cfg.generator, cfg, device)
    teacher, info = load_teacher(cfg.teacher, out)
    teacher = taking_any_size(teacher, info).to(device)
    teacher.requires_grad_(False)
    return gen, teacher, info


GENERATED_KEYS = ("images", "targets", "probs")  # what each generated batch holds


def token_set(cfg: DdisConfig, variant: str) -> tuple[str, bool]:
    """``(folder, trained_with_dag)`` of the CAT tokens ``variant`` uses.

    The main variant's tokens are in ``cat/``. With ``cat_with_dag`` they are trained on samples
    guided by DAG as the generation is (with ``cat_steps`` sampling steps); the ``cat_only`` ablation
    (no DAG at all) then gets its own tokens, trained without DAG, in ``cat_only_tokens/``.
    """
    if variant == "cat_only" and cfg.dag and cfg.cat_with_dag:
        return "cat_only_tokens", False
    return "cat", VARIANTS[variant].dag and cfg.cat_with_dag


def task_train_cat(cfg: DdisConfig, out: str, folder: str = "cat", with_dag: bool = False) -> dict:
    """Train the class alignment tokens into ``<folder>/learned_embeds.safetensors`` (skipped if
    present), on DAG-guided samples when ``with_dag``."""

    path = Path(out) / folder / "learned_embeds.safetensors"
    info_path = path.with_name("train_info.json")
    if path.exists():
        return json.loads(info_path.read_text())
    gen, teacher, info = _load(cfg, Path(out))
    guidance = dag_guides(teacher, cfg, cfg.cat_steps) if with_dag else []
    t0 = time.time()
    summary = train_class_tokens(gen, teacher, list(info.class_names), cfg, guidance=guidance)
    summary["cat_seconds"] = time.time() - t0
    save_learned_embeds(gen, cat_tokens(info.num_classes), path)
    atomic_write_text(info_path, json.dumps(summary))
    return summary


def task_generate(cfg: DdisConfig, out: str, variant: str, shard: Shard | None = None) -> None:
    """Generate ``num_images`` for ``variant`` into ``generated_<variant>/`` batch by batch (resumable;
    only ``shard``'s batches when given).

    Every variant uses the same targets and the same start noise per batch.
    """

    run_ = Run(out)
    gen, teacher, info = _load(cfg, run_.dir)
    use_dag, use_cat = VARIANTS[variant].dag, VARIANTS[variant].cat
    guidance = dag_guides(teacher, cfg, cfg.sample_steps) if use_dag else []
    if use_cat:
        load_learned_embeds(gen, run_.dir / token_set(cfg, variant)[0])
    names = list(info.class_names)
    template = cfg.plain_prompt or PLAIN_PROMPT
    targets_all = balanced_targets(cfg.num_images, info.num_classes)
    bs = cfg.batch_size

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        targets = targets_all[i * bs : (i + 1) * bs]
        prompts = cat_prompts(targets, names) if use_cat else plain_prompts(targets, names, template)
        seed = item_seed(cfg.seed, i, stride=GENERATION_STRIDE)
        images = sample(
            gen, prompts, steps=cfg.sample_steps, cfg=cfg.guidance_scale, guidance=guidance, seed=seed
        )
        with torch.no_grad():
            images = teacher.fit_input(images.detach().float()).clamp(0, 1)
            images = quantize(images)  # what the PNGs hold
            probs = teacher.classifier(images).softmax(1)
        return {"images": images.cpu(), "targets": targets, "probs": probs.cpu()}

    synthesize_batches(run_, num_batches(cfg), make_batch, folder=f"generated_{variant}", shard=shard)


def task_student(cfg: DdisConfig, out: str, variant: str) -> None:
    """KD student on a variant's images (``students/<variant>.safetensors``)."""

    path = Path(out) / "students" / f"{variant}.safetensors"
    if path.exists():
        return
    _, info = load_teacher(cfg.teacher, out)
    b = load_generated(Run(out), f"generated_{variant}", cfg.num_images, cfg.batch_size, GENERATED_KEYS)
    student, student_info = train_student(
        cfg.student, info, b["images"], b["probs"], seed=cfg.seed, device=resolve_device(cfg.device)
    )
    save_student(path, student, student_info)


def reference_images(
    cfg: DdisConfig, image_size: int, channels: int, class_names: list[str]
) -> tuple[ImageSet, ImageSet]:
    """The real images of the quality metrics in two seeded halves ``(fit, reference)``: the metric
    classifier learns from ``fit``; FID, precision/recall compare against ``reference``, images that
    classifier never trained on. The real images: the user's ``test_data`` (the only real images a
    data-free user has), else the train split of the private ``data`` the teacher learned from."""

    if cfg.test_data is not None:
        real = load_image_folder(cfg.test_data, size=image_size, channels=channels, class_names=class_names)
    else:
        real = resolve(cfg.data, image_size, channels, class_names=class_names).train
    if len(real) < 4:
        raise UserError(f"the quality metrics need at least 4 real images, got {len(real)}")
    reference, fit = split_holdout(real, cfg.seed, fraction=0.5)
    return fit, reference


def task_feature_classifier(cfg: DdisConfig, out: str) -> None:
    """The metric classifier: ``feature_preset`` trained on :func:`reference_images` (not the teacher)."""

    path = Path(out) / "feature_classifier.safetensors"
    if path.exists():
        return
    _, teacher, tinfo = _load(cfg, Path(out))
    train, _ = reference_images(cfg, tinfo.image_size, tinfo.in_channels, list(tinfo.class_names))
    t = cfg.teacher
    model = build_classifier(
        cfg.feature_preset, train.num_classes, train.images.shape[1], t.image_size, seed=t.seed + 1
    )
    train_classifier(
        model, train.images, train.labels, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
        weight_decay=t.weight_decay, augment=t.augment, noise=t.noise, seed=t.seed + 1,
    )  # fmt: skip
    info = ClassifierInfo(
        cfg.feature_preset, train.num_classes, train.images.shape[1], t.image_size, list(train.class_names)
    )
    save_classifier(path, model, info)


def num_batches(cfg: DdisConfig) -> int:
    return math.ceil(cfg.num_images / cfg.batch_size)


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
def synthesize_variants(cfg: DdisConfig, out: str, variants: list[str], main_variant: str, procs) -> dict:
    """Phase 1: the CAT tokens, with the variants that do not need them; phase 2: the CAT variants.

    Launched as several processes, the main one trains the tokens and the feature classifier and
    every process generates its share of each variant's batches. Returns the main variant's token
    training summary (``{}`` without CAT, or in other processes).
    """

    token_sets = sorted({token_set(cfg, v) for v in variants if VARIANTS[v].cat})
    once = [Task(task_train_cat, (cfg, out, *ts)) for ts in token_sets] + [
        Task(task_feature_classifier, (cfg, out))
    ]
    plain = [Task(task_generate, (cfg, out, v, procs.shard)) for v in variants if not VARIANTS[v].cat]
    results = run_phase(procs, once, plain, cfg.workers, cfg.threads)
    main_tokens = token_set(cfg, main_variant) if VARIANTS[main_variant].cat else None
    cat_info = results[token_sets.index(main_tokens)] if results and main_tokens in token_sets else {}
    with_tokens = [Task(task_generate, (cfg, out, v, procs.shard)) for v in variants if VARIANTS[v].cat]
    run_phase(procs, [], with_tokens, cfg.workers, cfg.threads)
    return cat_info


def variant_metrics(
    cfg: DdisConfig, run_, info, test, variants: list[str], main_variant: str, device
) -> dict:
    """Per variant: FID, precision/recall and Inception Score on the feature classifier, the
    teacher's agreement with the prompted class, the student's test accuracy; writes
    ``grid_<variant>.png``."""

    features_model, _ = load_classifier(run_.dir / "feature_classifier.safetensors")
    extract = classifier_features(features_model, device=device)
    _, reference = reference_images(cfg, info.image_size, info.in_channels, list(info.class_names))
    real = extract(reference.images)
    metrics: dict = {}
    for v in variants:
        b = load_generated(run_, f"generated_{v}", cfg.num_images, cfg.batch_size, GENERATED_KEYS)
        fake = extract(b["images"])
        precision, recall = precision_recall(real, fake)
        student = taking_any_size(*load_classifier(run_.dir / "students" / f"{v}.safetensors"))
        s_acc = evaluate(student, test.images, test.labels, device=device)
        p = "" if v == main_variant else VARIANTS[v].prefix
        metrics |= {
            f"{p}fid": frechet_distance(real, fake),
            f"{p}inception_score": inception_score(
                predict_logits(features_model, b["images"], device=device)
            )[0],
            f"{p}precision": precision,
            f"{p}recall": recall,
            f"{p}teacher_acc_on_synthetic": (b["probs"].argmax(1) == b["targets"]).float().mean().item(),
            f"{p}student_acc": s_acc,
            f"{p}synthesis_seconds": float(b["seconds"]),
        }
        index, columns = class_grid_index(b["targets"])  # up to 8 per class, one class per column
        save_grid(run_.path(f"grid_{v}.png"), b["images"][index], nrow=columns)
    return metrics


def write_synthetic(run_dir: Path, cfg: DdisConfig, variant: str, class_names: list[str]) -> dict:
    """``synthetic/``: ``variant``'s images as an ImageFolder labelled by the teacher, with soft labels."""

    b = load_generated(Run(run_dir), f"generated_{variant}", cfg.num_images, cfg.batch_size, GENERATED_KEYS)
    save_image_folder(
        run_dir / "synthetic", ImageSet(b["images"], b["probs"].argmax(1), class_names), b["probs"]
    )
    return {}


def note_unknown_class_words(cfg: DdisConfig, class_names: list[str]) -> list[str]:
    """One stderr line naming the class-prompt words the generator's tokenizer maps to its unknown
    token (they cannot get trained rows here: DDIS fine-tunes nothing); returns them."""

    try:
        tokenizer = Generator.load_tokenizer(cfg.generator)
    except UserError:
        return []  # the generator's own loading says what is wrong, in its place
    prompts = [f"a {c}" for c in class_names]
    if cfg.plain_prompt is not None:
        prompts += plain_prompts(torch.arange(len(class_names)), class_names, cfg.plain_prompt)
    words = unknown_words(tokenizer, prompts)
    if words:
        note_new_words(
            words,
            what="class prompts hold its unknown token for them (the plain variant cannot tell such classes "
            "apart by name; CAT's learned tokens still carry the class)",
        )
    return words


def _derive_generator(cfg: DdisConfig) -> DdisConfig:
    """The generator that makes the teacher's channels (``"embedded"`` resolved, :func:`embedded_for`)
    and ``student.image_size`` from its resolution and the teacher's (recorded in config.yaml)."""

    cfg = replace(cfg, generator=embedded_for(cfg.generator, teacher_channels(cfg.teacher, cfg.data)))
    size = Generator.geometry(cfg.generator)[0]
    return replace(cfg, student=resolve_student_size(cfg.student, cfg.teacher.image_size, size))


def run(cfg: DdisConfig, out: Path) -> dict:
    """`modelmine ddis`: CAT training, generation (DDIS + ablations), students, quality metrics."""

    t_start = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    for name in ("num_images", "batch_size", "sample_steps", "cat_per_class", "cat_steps"):
        if getattr(cfg, name) < 1:
            raise UserError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.dag_step < 0 or cfg.dag_scale < 0:
        raise UserError(f"dag_step and dag_scale must be >= 0, got {cfg.dag_step} and {cfg.dag_scale}")
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg, run_, device, teacher, info, test = open_data_free_run(
        cfg,
        out,
        check=lambda t: require_batchnorm(t, "DAG", DAG_INSTEAD) if cfg.dag else None,  # before any work
        derive=_derive_generator,
    )
    if procs.is_main:
        note_grey_for_colour(
            Generator.geometry(cfg.generator)[1], info.in_channels, "the teacher", cfg.generator
        )
    allowed = [v for v, u in VARIANTS.items() if (cfg.dag or not u.dag) and (cfg.cat or not u.cat)]
    main_variant = next(v for v, u in VARIANTS.items() if (u.dag, u.cat) == (cfg.dag, cfg.cat))
    variants = allowed if cfg.ablations else [main_variant]

    if procs.is_main:
        note_unknown_class_words(cfg, list(info.class_names))
    t0 = time.time()
    cat_info = synthesize_variants(cfg, str(run_.dir), variants, main_variant, procs)
    if not procs.is_main:  # the main process trains the students and computes the metrics
        return {}
    synthesis_seconds = time.time() - t0
    t0 = time.time()
    run_tasks([Task(task_student, (cfg, str(run_.dir), v)) for v in variants], cfg.workers, cfg.threads)
    student_seconds = time.time() - t0
    metrics = variant_metrics(cfg, run_, info, test, variants, main_variant, device)
    run_.stage("synthetic", lambda: write_synthetic(run_.dir, cfg, main_variant, list(info.class_names)))
    t_pred = predict_logits(teacher, test.images, device=device).argmax(1)
    return run_.log_metrics(
        **metrics, teacher_acc=(t_pred == test.labels).float().mean().item(), num_images=cfg.num_images,
        cat_iters=cat_info.get("cat_iters", 0), cat_classes_stopped=cat_info.get("cat_classes_stopped", 0),
        cat_seconds=cat_info.get("cat_seconds", 0.0), phase_synthesis_seconds=synthesis_seconds,
        phase_student_seconds=student_seconds, total_seconds=time.time() - t_start,
    )  # fmt: skip
