"""DDIS: data-free image synthesis from a BatchNorm classifier and a text-to-image diffusion model.

"Data-free knowledge distillation with diffusion models" style synthesis of arXiv:2506.15381
(official code: github.com/kdst-team/DDIS, incomplete). The classifier's training data are not
available; its BatchNorm statistics and its decisions steer a *pretrained* generator toward its
private domain. Two pieces, both on the shared generator and DDIM sampler:

- **Domain Alignment Guidance (DAG)**: at every DDIM step the current clean estimate ``x0_hat``
  is decoded to pixels (through the VAE when there is one), the classifier runs on it with hooks
  on every BatchNorm layer, and
  ``L_BN = sum_l ||mu_l(x) - mu_l||_2 + ||sigma^2_l(x) - sigma^2_l||_2``
  (batch statistics of each BN layer's input vs. its running statistics; the block
  :mod:`modelmine.bn_statistics` that DeepInversion uses too). Its gradient w.r.t. the latent
  moves the sample: :func:`dag_guidance` builds a sampler guide
  (:class:`modelmine.diffusion.guidance.LossGradient`) that applies it in the classifier-guidance
  form ``eps <- eps + sqrt(1 - a_t) * dag_scale * grad`` (the same DDIM update as moving ``x_t`` by
  ``-dag_scale (1 - a_t)/sqrt(a_t) * grad`` along the clean-estimate direction), after CFG rather
  than before it. ``dag_form="x_t"`` uses the paper's form instead
  (:class:`~modelmine.diffusion.guidance.CorrectXt`): ``x_t <- x_t - dag_scale * grad_{x_t}
  L_BN(decode(x_t))`` before the noise prediction, the DDIM update proceeding from the corrected
  state; its step size is not tuned here.
- **Class Alignment Token (CAT)**: one new token ``S_c`` per class, prompts ``"a S_c <class>"``
  (the paper's "A {S_c} {class name}"); only the token embeddings are trained, with the
  classifier's cross-entropy on generated images and the gradient through the last denoising step
  (``sample(..., grad_steps=1)``), Adam (paper: lr 5e-3; see below). The images the
  cross-entropy is taken on are sampled *with DAG* (``cat_with_dag``, default on): the paper
  forwards the image decoded from the DAG-guided latent to the classifier (its Fig. 2), and the
  official code applies the BN-gradient step inside the token-training loop. A class stops
  training once at least 70% of its batch is classified as the class (paper). Saved in
  textual-inversion format (``cat/learned_embeds.safetensors``). The ``cat_only`` ablation has no
  DAG anywhere, so it gets its own tokens trained without it (``cat_only_tokens/``).

A teacher without BatchNorm gets a one-line error for DAG; ``--set dag=false`` (CAT only) works on
any classifier. The command also generates the ablations (``plain``: the generator's default
class prompt, no DAG, no CAT; ``dag_only``; ``cat_only``) with the same seeds and start noise, and
for each: a student distilled on the images with the teacher's soft labels (the same recipe as
CAKE/DeepInversion), and quality metrics against the real private images on the penultimate
features of a *separate* classifier trained on the private data (not the teacher, whose
statistics DAG optimises): FID, k-NN precision/recall, and the teacher's agreement with the
prompted class.

Defaults and where they come from:

- Paper: 30 DDIM steps, CAT prompt template, Adam lr 5e-3, 70% early stop.
- Official code: BN loss weight 1e-3 with a guidance step of 50 x 0.01 on Stable Diffusion
  latents. Our scale (``dag_scale``) acts on the classifier-guidance form above in 16x16 pixel
  space, so the value is not comparable to the official one. Default 2, picked on the embedded
  default for the *student* (DAG-only generations of 1,000 images with the plain prompt and the
  plain generator's start noise; KD student accuracy on real digits, mean of 3 student seeds):

  ========================  =====  =====  =====  =====
  dag_scale                 0      2      5      10
  ========================  =====  =====  =====  =====
  student, seed-0 teacher   0.940  0.971  0.957  0.969
  student, seed-1 teacher   0.899  0.908  0.880  0.784
  teacher agreement, s0     0.49   0.53   0.55   0.46
  teacher agreement, s1     0.47   0.52   0.54   0.39
  ========================  =====  =====  =====  =====

  The previous default, 10, had the lowest BN loss and FID on 200 seed-0 images (FID 19.8 at 0,
  17.3 at 5, 16.4 at 10, 21.7 at 30), but with the seed-1 teacher its gradient is ~40% larger,
  it distorts the glyphs (the teacher agrees with the prompted class less often than without
  DAG) and the student lost 11 points. One student moves by up to 6 points with its own seed on
  the same images, hence 3 student seeds. ``benchmarks/ddis_bench.py`` reports seeds 0, 1 and a
  third one the scale was not picked on.
- Measured (``benchmarks/ddis_bench.py``, seeds 0-2, 1,000 images per variant, means): student
  DDIS 0.872, DAG only 0.870, CAT only 0.821, plain 0.835, DeepInversion 0.943; FID DDIS 18.2 vs
  plain 19.8 (lower on every seed). DDIS and DAG alone beat plain on every seed; DDIS's lead over
  DAG alone is inside the student-seed noise, and DeepInversion's student stays ahead. Training
  the tokens on DAG-guided samples (``cat_with_dag``) moved DDIS from 0.855 to 0.872 (seed 1:
  0.856 to 0.908). See the README.
- Embedded budget: 1,000 images per variant (100 per class), CAT trained with 10-step DDIM
  sampling (by default the gradient only flows through the last step anyway), at most 40
  iterations.
- ``cat_grad_steps`` (default 1, the paper's last step) lets the CE gradient flow through more
  denoising steps. Measured with the seed-1 teacher (teacher agreement with the class on 200 CAT
  images at 30 steps; plain prompt 0.44): last step 0.44; all 10 steps 0.465 (2.5x the CAT
  time); all 10 steps with lr 0.2 and no early stop 0.485 (5x). Small gains for the cost, so the
  paper's choice stays the default. On the embedded model the tokens barely move the teacher's
  agreement either way; we have not established why (one guess: the 64-wide text encoder of a
  model pretrained on glyphs has no direction for the private digits' style).
- CAT learning rate 5e-2 on 8 images per class per iteration, not the paper's 5e-3 (tuned for
  Stable Diffusion's 1024-wide embeddings; ours are 64 wide): with 5e-3 and 4 images per class
  the 70% early stop fired on lucky 3-of-4 batches and the tokens barely moved (teacher
  agreement with the class on 1,000 generated images 0.336, plain prompt 0.337; students 0.861
  vs 0.828); with 5e-2 and 8 per class the agreement on 200 CAT images was 0.42.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import quantize
from ..distill import StudentConfig
from ..distributed import Shard
from ..errors import UserError
from ..teacher import TeacherConfig

if TYPE_CHECKING:
    from ..diffusion.guidance import Guide

VARIANTS = ("ddis", "plain", "dag_only", "cat_only")  # (dag, cat) = (1,1), (0,0), (1,0), (0,1)
PREFIX = {"ddis": "", "plain": "plain_", "dag_only": "dag_only_", "cat_only": "cat_only_"}
USES = {"ddis": (True, True), "plain": (False, False), "dag_only": (True, False), "cat_only": (False, True)}


@dataclass
class DdisConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)  # the CAKE / DeepInversion recipe
    data: str = "digits"  # the private data the default teacher trains on (built-in name or folder)
    test_data: str | None = None  # real test ImageFolder; none: the test split of `data`
    generator: str = "embedded"  # "embedded", an embedded .safetensors, or a diffusers SD folder
    dag: bool = True
    cat: bool = True
    ablations: bool = True  # also plain, dag_only, cat_only
    num_images: int = 1000  # per variant, classes balanced
    batch_size: int = 100
    sample_steps: int = 30
    cfg: float | None = None  # None: the generator's stored default
    plain_prompt: str | None = None  # {c} = class name; None: the generator's default prompt
    dag_scale: float = 2.0
    # "eps": DAG's gradient added to the noise prediction (classifier-guidance form, the default the
    # numbers below were measured with); "x_t": the paper's correction of x_t before the prediction
    # with step size dag_scale (not tuned here)
    dag_form: Literal["eps", "x_t"] = "eps"
    cat_lr: float = 5e-2
    cat_iters: int = 40
    cat_per_class: int = 8
    cat_steps: int = 10
    cat_grad_steps: int = 1  # denoising steps the CE gradient flows through (paper: the last one)
    cat_stop_acc: float = 0.7
    cat_with_dag: bool = True  # tokens trained on DAG-guided samples (paper Fig. 2, official code)
    feature_preset: str = "cnn_small"  # the metric classifier (trained on the private data)
    workers: int = 2
    threads: int = 1
    seed: int = 0
    device: str = "auto"


# ------------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------------
class FitInput(nn.Module):
    """:func:`modelmine.data.fit_to` as a module: generated images ``(B, C, H, W)`` resized and
    channel-matched to what a classifier takes, inside the graph DAG and CAT differentiate."""

    def __init__(self, size: int, channels: int):
        super().__init__()
        self.size, self.channels = size, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..data import fit_to

        return fit_to(x, self.size, self.channels)


def balanced_targets(n: int, num_classes: int) -> torch.Tensor:
    """``(n,)`` class targets ``0, 1, ..., K-1, 0, 1, ...`` (every batch of K is balanced)."""
    return torch.arange(n) % num_classes


def cat_tokens(num_classes: int) -> list[str]:
    return [f"<cat-{k}>" for k in range(num_classes)]


def cat_prompts(targets: torch.Tensor, class_names: list[str]) -> list[str]:
    """The paper's ``"A {S_c} {class name}"`` for each target ``(B,)``."""
    toks = cat_tokens(len(class_names))
    return [f"a {toks[c]} {class_names[c]}" for c in targets.tolist()]


def plain_prompts(targets: torch.Tensor, class_names: list[str], template: str) -> list[str]:
    return [template.format(c=class_names[c]) for c in targets.tolist()]


DAG_INSTEAD = "run with --set dag=false (CAT only) or use `modelmine cake`"


def dag_guidance(classifier: nn.Module, scale: float, form: Literal["eps", "x_t"] = "eps") -> Guide:
    """DAG as a sampler guide: the BatchNorm-statistics loss of ``classifier`` (eval mode) on the
    decoded images, as a gradient added to the prediction (``form="eps"``, our default) or as the
    paper's correction of ``x_t`` before it (``"x_t"``). No BatchNorm: a one-line error."""
    from ..bn_statistics import BNStatistics
    from ..diffusion.guidance import CorrectXt, LossGradient

    classifier.eval()
    stats = BNStatistics(classifier, "DAG", DAG_INSTEAD, deferred=True)  # keeps DAG's rounding

    def bn_loss(images: torch.Tensor, t: int) -> torch.Tensor:  # images (B, C, H, W) in [0, 1]
        with stats:
            classifier(images)
        return stats.loss()

    if form == "x_t":
        return CorrectXt(bn_loss, scale)
    return LossGradient(bn_loss, scale)


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
    ``cat_steps`` DDIM steps and the graph kept through the last one, and takes an Adam step on the
    token rows with the classifier's cross-entropy. A class whose batch is at least
    ``cat_stop_acc`` classified as the class is frozen (early stop).
    """
    from ..diffusion.sampler import sample
    from ..diffusion.tokens import add_placeholder_tokens, restore_other_rows, token_parameter

    k = len(class_names)
    tokens = cat_tokens(k)
    ids = add_placeholder_tokens(gen, tokens)
    emb = gen.text_encoder.get_input_embeddings().weight
    with torch.no_grad():  # start each token at its class name's embedding (a known word)
        for i, name in zip(ids, class_names, strict=True):
            word = gen.tokenizer(name, add_special_tokens=False).input_ids
            if len(word) == 1 and word[0] != gen.tokenizer.unk_token_id:
                emb[i] = emb[word[0]]
    weight = token_parameter(gen, ids)
    reference = weight.detach().clone()
    opt = torch.optim.Adam([weight], lr=cfg.cat_lr)
    active = torch.ones(k, dtype=torch.bool)
    history = []
    it = 0
    for it in range(cfg.cat_iters):
        classes = torch.nonzero(active).squeeze(1)
        if len(classes) == 0:
            break
        targets = classes.repeat(cfg.cat_per_class)
        images = sample(
            gen, cat_prompts(targets, class_names), steps=cfg.cat_steps, cfg=cfg.cfg,
            seed=cfg.seed * 7919 + it, grad_steps=cfg.cat_grad_steps, guidance=guidance,
        )  # fmt: skip
        logits = classifier(images)
        loss = F.cross_entropy(logits, targets.to(logits.device))
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
    return {"cat_iters": it + 1, "cat_classes_stopped": int((~active).sum()), "cat_history": history}


# ------------------------------------------------------------------------------------------------
# tasks (module-level: worker processes run them)
# ------------------------------------------------------------------------------------------------
def _load(cfg: DdisConfig, out: Path):
    """``(generator, teacher, info)`` in eval mode, the teacher frozen."""
    from ..classifiers import load_classifier
    from ..diffusion.generator import Generator
    from ..distributed import resolve_device

    device = resolve_device(cfg.device)
    gen = Generator.from_pretrained(cfg.generator).to(device)
    path = Path(cfg.teacher.path) if cfg.teacher.path is not None else out / "teacher.safetensors"
    teacher, info = load_classifier(path, cfg.teacher.preset if cfg.teacher.path else None)
    teacher = nn.Sequential(FitInput(info.image_size, info.in_channels), teacher).to(device).eval()
    teacher.requires_grad_(False)
    return gen, teacher, info


def token_set(cfg: DdisConfig, variant: str) -> tuple[str, bool]:
    """``(folder, trained_with_dag)`` of the CAT tokens ``variant`` uses.

    The main variant's tokens are in ``cat/``. With ``cat_with_dag`` they are trained on samples
    guided by DAG as the generation is (with ``cat_steps`` DDIM steps); the ``cat_only`` ablation
    (no DAG at all) then gets its own tokens, trained without DAG, in ``cat_only_tokens/``.
    """
    if variant == "cat_only" and cfg.dag and cfg.cat_with_dag:
        return "cat_only_tokens", False
    return "cat", USES[variant][0] and cfg.cat_with_dag


def task_train_cat(cfg: DdisConfig, out: str, folder: str = "cat", with_dag: bool = False) -> dict:
    """Train the class alignment tokens into ``<folder>/learned_embeds.safetensors`` (skipped if
    present), on DAG-guided samples when ``with_dag``."""
    from ..diffusion.tokens import save_learned_embeds
    from ..runs import atomic_write_text

    path = Path(out) / folder / "learned_embeds.safetensors"
    info_path = path.with_name("train_info.json")
    if path.exists():
        return json.loads(info_path.read_text())
    gen, teacher, info = _load(cfg, Path(out))
    guidance = [dag_guidance(teacher, cfg.dag_scale, cfg.dag_form)] if with_dag else []
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
    from ..diffusion.sampler import sample
    from ..diffusion.tokens import load_learned_embeds
    from ..runs import Run, synthesize_batches

    run_ = Run(out)
    gen, teacher, info = _load(cfg, run_.dir)
    use_dag, use_cat = USES[variant]
    guidance = [dag_guidance(teacher, cfg.dag_scale, cfg.dag_form)] if use_dag else []
    if use_cat:
        load_learned_embeds(gen, run_.dir / token_set(cfg, variant)[0])
    names = list(info.class_names)
    template = cfg.plain_prompt or gen.defaults.get("prompt", "a photo of {c}")
    targets_all = balanced_targets(cfg.num_images, info.num_classes)
    bs = cfg.batch_size

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        targets = targets_all[i * bs : (i + 1) * bs]
        prompts = cat_prompts(targets, names) if use_cat else plain_prompts(targets, names, template)
        seed = cfg.seed * 100_003 + i
        images = sample(gen, prompts, steps=cfg.sample_steps, cfg=cfg.cfg, guidance=guidance, seed=seed)
        with torch.no_grad():
            images = teacher[0](images.detach().float()).clamp(0, 1)
            images = quantize(images)  # what the PNGs hold
            probs = teacher[1](images).softmax(1)
        return {"images": images.cpu(), "targets": targets, "probs": probs.cpu()}

    synthesize_batches(run_, num_batches(cfg), make_batch, folder=f"generated_{variant}", shard=shard)


def task_student(cfg: DdisConfig, out: str, variant: str) -> None:
    """KD student on a variant's images (``students/<variant>.safetensors``)."""
    from ..classifiers import load_classifier
    from ..distill import fit_student
    from ..distributed import resolve_device

    path = Path(out) / "students" / f"{variant}.safetensors"
    if path.exists():
        return
    teacher_path = (
        Path(cfg.teacher.path) if cfg.teacher.path is not None else Path(out) / "teacher.safetensors"
    )
    _, info = load_classifier(teacher_path, cfg.teacher.preset if cfg.teacher.path else None)
    b = load_generated(Path(out), variant, cfg)
    fit_student(
        path, info, b["images"], b["probs"], cfg.student, seed=cfg.seed, device=resolve_device(cfg.device)
    )


def reference_images(cfg: DdisConfig, image_size: int, channels: int, class_names: list[str]):
    """Real images the metrics compare against: the user's ``test_data`` (the only real images a
    data-free user has), else the train split of the private ``data`` the teacher learned from."""
    from ..data import fit_to, is_builtin, load_builtin, load_image_folder

    if cfg.test_data is not None:
        return load_image_folder(cfg.test_data, size=image_size, channels=channels, class_names=class_names)
    if is_builtin(cfg.data):
        ref = load_builtin(cfg.data, "train", image_size)
        ref.images = fit_to(ref.images, image_size, channels)
        return ref
    return load_image_folder(cfg.data, size=image_size, channels=channels, class_names=class_names)


def task_feature_classifier(cfg: DdisConfig, out: str) -> None:
    """The metric classifier: ``feature_preset`` trained on :func:`reference_images` (not the teacher)."""
    from ..classifiers import ClassifierInfo, build_classifier, save_classifier, train_classifier

    path = Path(out) / "feature_classifier.safetensors"
    if path.exists():
        return
    _, teacher, tinfo = _load(cfg, Path(out))
    train = reference_images(cfg, tinfo.image_size, tinfo.in_channels, list(tinfo.class_names))
    t = cfg.teacher
    model = build_classifier(
        cfg.feature_preset, train.num_classes, train.images.shape[1], t.image_size, seed=t.seed + 1
    )
    train_classifier(
        model, train.images, train.labels, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size,
        weight_decay=t.weight_decay, augment=t.augment, seed=t.seed + 1,
    )  # fmt: skip
    info = ClassifierInfo(
        cfg.feature_preset, train.num_classes, train.images.shape[1], t.image_size, list(train.class_names)
    )
    save_classifier(path, model, info)


def num_batches(cfg: DdisConfig) -> int:
    return math.ceil(cfg.num_images / cfg.batch_size)


def load_generated(run_dir: Path, variant: str, cfg: DdisConfig) -> dict:
    """All of ``variant``'s images ``(N, C, H, W)``, targets ``(N,)``, teacher probabilities ``(N, K)``
    and generation ``seconds`` (a missing batch is an error, not a smaller set)."""
    from ..runs import Run
    from ..runs import load_generated as read

    keys = ("images", "targets", "probs")
    return read(Run(run_dir), f"generated_{variant}", cfg.num_images, cfg.batch_size, keys)


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
def synthesize_variants(cfg: DdisConfig, out: str, variants: list[str], main_variant: str, procs) -> dict:
    """Phase 1: the CAT tokens, with the variants that do not need them; phase 2: the CAT variants.

    Launched as several processes, the main one trains the tokens and the feature classifier and
    every process generates its share of each variant's batches. Returns the main variant's token
    training summary (``{}`` without CAT, or in other processes).
    """
    from ..runs import run_phase

    token_sets = sorted({token_set(cfg, v) for v in variants if USES[v][1]})
    once = [(task_train_cat, (cfg, out, *ts)) for ts in token_sets] + [(task_feature_classifier, (cfg, out))]
    plain = [(task_generate, (cfg, out, v, procs.shard)) for v in variants if not USES[v][1]]
    results = run_phase(procs, once, plain, cfg.workers, cfg.threads)
    main_tokens = token_set(cfg, main_variant) if USES[main_variant][1] else None
    cat_info = results[token_sets.index(main_tokens)] if results and main_tokens in token_sets else {}
    with_tokens = [(task_generate, (cfg, out, v, procs.shard)) for v in variants if USES[v][1]]
    run_phase(procs, [], with_tokens, cfg.workers, cfg.threads)
    return cat_info


def variant_metrics(
    cfg: DdisConfig, run_, info, test, variants: list[str], main_variant: str, device
) -> dict:
    """Per variant: FID, precision/recall on the feature classifier, the teacher's agreement with
    the prompted class, the student's test accuracy; writes ``grid_<variant>.png``."""
    from ..classifiers import load_classifier, predict_logits
    from ..metrics import classifier_features, frechet_distance, precision_recall
    from ..report import class_grid_index, save_grid

    features_model, _ = load_classifier(run_.dir / "feature_classifier.safetensors")
    extract = classifier_features(features_model, device=device)
    real = extract(reference_images(cfg, info.image_size, info.in_channels, list(info.class_names)).images)
    metrics: dict = {}
    for v in variants:
        b = load_generated(run_.dir, v, cfg)
        fake = extract(b["images"])
        precision, recall = precision_recall(real, fake)
        student, _ = load_classifier(run_.dir / "students" / f"{v}.safetensors")
        s_acc = (predict_logits(student, test.images, device=device).argmax(1) == test.labels).float().mean()
        p = "" if v == main_variant else PREFIX[v]
        metrics |= {
            f"{p}fid": frechet_distance(real, fake),
            f"{p}precision": precision,
            f"{p}recall": recall,
            f"{p}teacher_acc_on_synthetic": (b["probs"].argmax(1) == b["targets"]).float().mean().item(),
            f"{p}student_acc": s_acc.item(),
            f"{p}synthesis_seconds": float(b["seconds"]),
        }
        index, columns = class_grid_index(b["targets"])  # up to 8 per class, one class per column
        save_grid(run_.path(f"grid_{v}.png"), b["images"][index], nrow=columns)
    return metrics


def write_synthetic(run_dir: Path, cfg: DdisConfig, variant: str, class_names: list[str]) -> dict:
    """``synthetic/``: ``variant``'s images as an ImageFolder labelled by the teacher, with soft labels."""
    from ..data import ImageSet, save_image_folder

    b = load_generated(run_dir, variant, cfg)
    save_image_folder(
        run_dir / "synthetic", ImageSet(b["images"], b["probs"].argmax(1), class_names), b["probs"]
    )
    return {}


def run(cfg: DdisConfig, out: Path) -> dict:
    """`modelmine ddis`: CAT training, generation (DDIS + ablations), students, quality metrics."""
    from ..bn_statistics import require_batchnorm
    from ..classifiers import predict_logits
    from ..distributed import processes, resolve_device
    from ..runs import Run, run_tasks
    from ..teacher import resolve_teacher, teacher_and_test_set

    t_start = time.time()
    torch.set_num_threads(max(1, cfg.threads))
    for name in ("num_images", "batch_size", "sample_steps", "cat_per_class", "cat_steps"):
        if getattr(cfg, name) < 1:
            raise UserError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    procs = processes()  # one, or a shard of an `accelerate launch` (modelmine.distributed)
    cfg = resolve_teacher(cfg, cfg.data)
    run_ = Run(out, cfg)
    device = resolve_device(cfg.device)
    teacher, info, test = teacher_and_test_set(
        cfg.teacher, cfg.data, cfg.test_data, run_.dir, device,
        check=lambda t: require_batchnorm(t, "DAG", DAG_INSTEAD) if cfg.dag else None,  # before any work
    )  # fmt: skip
    allowed = [v for v in VARIANTS if (cfg.dag or not USES[v][0]) and (cfg.cat or not USES[v][1])]
    main_variant = next(v for v in VARIANTS if USES[v] == (cfg.dag, cfg.cat))
    variants = allowed if cfg.ablations else [main_variant]

    t0 = time.time()
    cat_info = synthesize_variants(cfg, str(run_.dir), variants, main_variant, procs)
    if not procs.is_main:  # the main process trains the students and computes the metrics
        return {}
    synthesis_seconds = time.time() - t0
    t0 = time.time()
    run_tasks([(task_student, (cfg, str(run_.dir), v)) for v in variants], cfg.workers, cfg.threads)
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
