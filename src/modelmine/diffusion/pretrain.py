"""`modelmine pretrain`: train the embedded tiny text-to-image generator on public data only.

Standard DDPM training (Ho et al., 2020: MSE at uniformly drawn timesteps against the target of the
scheduler's ``prediction_type``, :func:`training_target`; epsilon for the embedded model) of
the UNet and the text encoder together, from scratch, on a freshly generated public batch every
step (private images are never seen). Each batch mixes (:func:`public_batch`, shares ``mix``):

- digit glyphs rendered from the shipped fonts (:func:`modelmine.data.render_glyphs`), prompted with
  the templates later methods use: ``"a photo of digit three"`` variants, TCKR's
  ``"three: <attribute caption>"`` and ``"a <word> three"`` (the slot textual inversion / class
  alignment tokens later fill);
- other glyphs of the same fonts: lower- and upper-case letters and symbols (``"a photo of capital
  letter k"``, ``"a photo of symbol plus"``, ``"letter k: <caption>"``);
- procedural shapes and textures (:mod:`modelmine.procedural`: ``"a photo of a circle"``,
  ``"a photo of horizontal stripes"``, ``"leaves: <caption>"``).

Captions come from the attribute captioner (:class:`modelmine.captioning.AttributeCaptioner`), so
its words (stroke words for glyphs, brightness / contrast / edges / orientation for the rest) mean
something to the text encoder. Classifier-free guidance is learned by dropping 10% of prompts to
``""`` (Ho & Salimans, 2022); an EMA of the weights is what ships. One command with the shipped
defaults (seed 0, 1 thread) reproduces the shipped weights.

What makes conditioning learn fast here (measured, see ``benchmarks/results``): the pooled text
embedding added to the time embedding of every ResNet block (diffusers' ``addition_embed_type=
"text"``), a text-encoder learning rate as high as the UNet's, short consistent templates, EMA.

Quality is measured with the Classification Accuracy Score (:mod:`modelmine.metrics`) on
``cas_per_class`` images per class at the default sampling settings: ``cas_public`` by a classifier
trained on held-out public glyphs, ``cas_private`` by the default digits teacher (the domain gap
LoRA/DAG later close). Resumable: a checkpoint is written atomically every few minutes.

Colour (``channels=3``): the same corpus, every image passed through
:func:`modelmine.procedural.colourise` (a colour ramp of one dominant hue per image, a quarter left
grey), so the attribute captions gain saturation and hue words (``"three: thick upright large
centered bold red"``); ``cas_public`` uses a classifier of colourised held-out glyphs and
``cas_private`` is not measured (the digits teacher reads grey). Warm start (``init_from``,
``"embedded"`` for the shipped grey model): fewer channels are widened (:func:`widen_channels`:
``conv_in`` split equally over the new inputs, ``conv_out`` repeated), so the widened model starts
out making the grey model's images on grey input and only has to learn colour (the widening of
Stable Diffusion's inpainting models). The colour model predicts ``v = sqrt(a) eps - sqrt(1 - a) x0``
(Salimans & Ho, 2022; SD 2's parameterisation) and samples from ``trailing`` timesteps (Lin et al.,
2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"): with epsilon prediction the
first step's ``x0_hat = (x_t - sqrt(1 - a) eps) / sqrt(a)`` divides the UNet's error by ``sqrt(a)``
(0.15 at t = 901, the first of 10 ``leading`` steps), so a small image's mean colour comes from the
starting noise, not the prompt; ``v`` is ``-x0`` where ``a -> 0``; trailing steps start at ``T - 1``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from ..captioning import ATTRIBUTE_WORDS, AttributeCaptioner
from ..classifiers import (
    ClassifierInfo,
    build_classifier,
    evaluate,
    load_classifier,
    save_classifier,
    train_classifier,
)
from ..config import Threads, config_to_dict
from ..data import DIGIT_NAMES, render_glyphs
from ..distributed import resolve_device
from ..errors import UserError
from ..metrics import classification_accuracy_score
from ..procedural import KINDS, ORIENTATIONS, SHAPES, colourise, render_procedural
from ..report import save_grid
from ..runs import Run, atomic_torch_save, atomic_write_text, item_seed
from ..teacher import TeacherConfig, obtain_teacher, resolve_teacher
from .generator import ASSETS, EMBEDDED_FILES, Generator, embedded_tokenizer_path, embedded_weights
from .sampler import sample_batched

EVAL_TEMPLATE = "a photo of digit {c}"
TEMPLATES = (  # (template, weight); {c} class word, {cap} attribute caption, {w} one attribute
    # mostly ONE template: with the class word the only token that varies, the text encoder
    # (trained from scratch) picks up class conditioning far sooner than with many templates
    ("a photo of digit {c}", 12),
    ("{c}: {cap}", 4),
    ("a {w} {c}", 2),
    ("a photo of the digit {c}", 1),
    ("digit {c}", 1),
    ("{c}", 1),
    ("a {c}", 1),
    ("a photo of digit {c}, {w}", 1),
)

# letters and symbols of the shipped fonts, and the words that name them in prompts
SYMBOL_NAMES = {"+": "plus", "=": "equals", "#": "hash", "*": "star", "?": "question",
                "!": "exclamation", "%": "percent", "&": "ampersand", "@": "at", "$": "dollar"}  # fmt: skip
LOWER = "abcdefghijklmnopqrstuvwxyz"
CHARS = LOWER + LOWER.upper() + "".join(SYMBOL_NAMES)
CHAR_NAMES = (
    [f"letter {c}" for c in LOWER]
    + [f"capital letter {c}" for c in LOWER]
    + [f"symbol {n}" for n in SYMBOL_NAMES.values()]
)
OTHER_TEMPLATES = (("a photo of {name}", 3), ("{kind}: {cap}", 1), ("{name}", 1))


@dataclass
class PretrainConfig(Threads):
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-3  # UNet
    text_lr: float = 4e-3  # text encoder (from scratch; twice the UNet's)
    warmup: int = 50
    min_lr_frac: float = 0.05  # cosine decay to this fraction of lr
    cond_dropout: float = 0.1  # prompts replaced by "" (unconditional) for CFG
    mix: tuple[float, float, float] = (0.5, 0.25, 0.25)  # shares of digits, other glyphs, procedural
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_minutes: float = 3.0
    eval_every: int = 250  # quick CAS (eval_per_class images) during training; 0 = never
    eval_per_class: int = 10
    cas_per_class: int = 500  # final CAS
    sample_steps: int = 30  # default sampling settings (stored with the weights)
    # CFG scale for CAS and the stored defaults, the best of a probe on public glyphs (grey: 1.5 beat
    # 1, 2, 3, 6, 10; colour: 3 beat 1.5, 2, 4, benchmarks/diffusion_pretrain.py --cfg-probe)
    guidance_scale: float = 1.5
    public_classifier_train: int = 5000  # held-out public glyphs for the CAS classifier
    public_classifier_epochs: int = 8
    teacher: TeacherConfig = field(default_factory=TeacherConfig)  # cas_private's classifier
    channels: int = 1  # 1: grey; 3: colour (the corpus colourised, module docstring)
    init_from: str | None = None  # warm start: a checkpoint.pt, an embedded .safetensors or "embedded"
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"  # the UNet output (docstring)
    timestep_spacing: Literal["leading", "trailing"] = "leading"  # where sampling's timesteps sit
    ship: bool = False  # also copy the weights into the package (src/modelmine/assets)


def make_prompts(labels: torch.Tensor, captions: list[str], rng: random.Random) -> list[str]:
    """One training prompt per image from :data:`TEMPLATES` (``labels`` ``(B,)``, attribute captions)."""
    temps, weights = zip(*TEMPLATES, strict=True)
    out = []
    for y, cap in zip(labels.tolist(), captions, strict=True):
        words = [w for w in ATTRIBUTE_WORDS if w in cap]
        w = rng.choice(words) if words else "regular"
        out.append(rng.choices(temps, weights)[0].format(c=DIGIT_NAMES[y], cap=cap, w=w))
    return out


def class_prompts(per_class: int, template: str = EVAL_TEMPLATE) -> tuple[list[str], torch.Tensor]:
    """``per_class`` prompts for each digit, class-major; labels ``(10 * per_class,)``."""
    labels = torch.arange(10).repeat_interleave(per_class)
    return [template.format(c=DIGIT_NAMES[y]) for y in labels.tolist()], labels


def _other_prompts(kinds: list[str], names: list[str], captions: list[str], rng: random.Random) -> list[str]:
    """Prompts for non-digit images from :data:`OTHER_TEMPLATES`: ``kinds`` are one-word handles
    (``"k"``, ``"circle"``), ``names`` the phrases that name them (``"letter k"``, ``"a circle"``)."""
    temps, weights = zip(*OTHER_TEMPLATES, strict=True)
    return [
        rng.choices(temps, weights)[0].format(name=n, kind=k, cap=c)
        for k, n, c in zip(kinds, names, captions, strict=True)
    ]


def public_batch(
    n: int, seed: int, mix: tuple[float, float, float], captioner, rng: random.Random, channels: int = 1
) -> tuple[torch.Tensor, list[str]]:
    """One pretraining batch: images ``(n, channels, 16, 16)`` and their prompts, ``mix`` = shares of
    digit glyphs, letter/symbol glyphs and procedural images (rounded; digits take the remainder);
    ``channels=3`` colourises every image (:func:`modelmine.procedural.colourise`)."""
    n_chr, n_proc = round(mix[1] * n), round(mix[2] * n)
    n_dig = n - n_chr - n_proc

    def paint(x: torch.Tensor, offset: int) -> torch.Tensor:
        return x if channels == 1 else colourise(x, seed + offset)

    digits = render_glyphs(n_dig, seed=seed)
    digit_x = paint(digits.images, 3)
    prompts = make_prompts(digits.labels, captioner(digit_x), rng)
    images = [digit_x]
    if n_chr:
        chars = render_glyphs(n_chr, seed=seed + 1, chars=CHARS, names=CHAR_NAMES)
        names = [CHAR_NAMES[i] for i in chars.labels.tolist()]
        kinds = [nm.split()[-1] for nm in names]
        chars_x = paint(chars.images, 4)
        prompts += _other_prompts(kinds, names, captioner(chars_x), rng)
        images.append(chars_x)
    if n_proc:
        proc, kind, orient = render_procedural(n_proc, seed=seed + 2)
        proc = paint(proc, 5)
        kinds = [KINDS[k] for k in kind.tolist()]
        names = [
            (f"a {k}" if k in SHAPES or k == "checkerboard" else k)
            if o < 0 or rng.random() < 0.3
            else f"{ORIENTATIONS[o]} {k}"
            for k, o in zip(kinds, orient.tolist(), strict=True)
        ]
        prompts += _other_prompts(kinds, names, captioner(proc), rng)
        images.append(proc)
    return torch.cat(images), prompts


def public_cas_classifier(
    out_dir: Path, n_train: int, seed: int = 0, device="cpu", epochs: int = 8, channels: int = 1
):
    """A ``cnn`` trained on held-out public glyphs (seeds never used in pretraining), colourised when
    ``channels=3``; cached."""
    path = out_dir / "cas_public_classifier.safetensors"
    if path.exists():
        return load_classifier(path)[0], json.loads((out_dir / "cas_public_classifier.json").read_text())
    train = render_glyphs(n_train, seed=900_001 + seed)
    test = render_glyphs(2000, seed=900_002 + seed)
    train_x, test_x = train.images, test.images
    if channels == 3:
        train_x, test_x = colourise(train_x, 900_003 + seed), colourise(test_x, 900_004 + seed)
    model = build_classifier("cnn", 10, channels, 16)
    train_classifier(model, train_x, train.labels, epochs=epochs, lr=3e-3, seed=seed, device=device)
    acc = evaluate(model, test_x, test.labels, device=device)
    save_classifier(path, model.cpu(), ClassifierInfo("cnn", 10, channels, 16, list(DIGIT_NAMES)))
    info = {"public_classifier_acc": acc}
    atomic_write_text(out_dir / "cas_public_classifier.json", json.dumps(info))
    return model.cpu(), info


def measure_cas(
    gen: Generator, classifier, per_class: int, *, steps: int, cfg: float, seed: int = 0, batch_size=250
) -> tuple[float, list[float], torch.Tensor, float]:
    """CAS of ``gen`` prompted with :data:`EVAL_TEMPLATE`; returns (cas, per-class, images, seconds)."""
    prompts, labels = class_prompts(per_class)
    t0 = time.time()
    images = sample_batched(gen, prompts, batch_size=batch_size, steps=steps, cfg=cfg, seed=seed)
    seconds = time.time() - t0
    cas, per = classification_accuracy_score(classifier, images, labels, per_class=True, num_classes=10)
    return cas, per, images, seconds


class _EMA:
    """Exponential moving average of parameters (warm-up corrected decay), batched with foreach ops."""

    def __init__(self, params: list[torch.Tensor], decay: float):
        self.params = params
        self.shadow = [p.detach().clone() for p in params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange live and EMA weights (call twice to restore)."""
        for p, s in zip(self.params, self.shadow, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def _warm_start(gen: Generator, source: str) -> None:
    """Load UNet + text encoder weights from a pretrain ``checkpoint.pt`` (live weights), an embedded
    ``.safetensors`` or a shipped model's name (``"embedded"``, :func:`embedded_weights`), widened to
    ``gen``'s channels (:func:`widen_channels`); the optimizer starts fresh."""
    weights = embedded_weights(source)
    if not (weights or Path(source)).is_file():
        raise UserError(f"init_from file not found: {weights or source}")
    if weights is not None:
        src = Generator.embedded(weights)
        unet_sd, text_sd = src.unet.state_dict(), src.text_encoder.state_dict()
    else:
        ck = torch.load(source, map_location="cpu", weights_only=True)
        unet_sd, text_sd = ck["unet"], ck["text_encoder"]
    gen.unet.load_state_dict(widen_channels(unet_sd, gen.channels))
    gen.text_encoder.load_state_dict(text_sd)


def widen_channels(unet_sd: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """A pixel-space UNet's state dict widened to ``channels`` image channels: ``conv_in`` weights
    ``(o, c, k, k)`` split equally over the new inputs, ``conv_out`` weights and biases repeated per
    new output, so equal-channel input gives the old model's output on every channel. Unchanged when
    the channels match; a one-line error when they cannot be widened."""
    c = unet_sd["conv_in.weight"].shape[1]
    if c == channels:
        return unet_sd
    if channels % c:
        raise UserError(f"init_from makes {c}-channel images; it cannot be widened to {channels} channels")
    r = channels // c
    out = dict(unet_sd)
    out["conv_in.weight"] = unet_sd["conv_in.weight"].repeat_interleave(r, 1) / r
    out["conv_out.weight"] = unet_sd["conv_out.weight"].repeat_interleave(r, 0)
    out["conv_out.bias"] = unet_sd["conv_out.bias"].repeat_interleave(r, 0)
    return out


def _lr_factor(step: int, cfg: PretrainConfig) -> float:

    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def training_target(
    prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    """What the UNet learns to output for ``x_t = sqrt(a) x0 + sqrt(1 - a) noise``, per the
    scheduler's ``prediction_type``, as diffusers' training scripts compute it: ``epsilon`` -> the
    noise; ``v_prediction`` -> ``v = sqrt(a) noise - sqrt(1 - a) x0`` (Salimans & Ho, 2022, the
    scheduler's ``get_velocity``); ``sample`` -> ``x0``. Shapes ``(B, c, h, w)``, ``a`` ``(B, 1, 1, 1)``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise UserError(f"unsupported prediction type '{prediction_type}' (epsilon, v_prediction or sample)")


def train_step(gen: Generator, images: torch.Tensor, prompts: list[str], g: torch.Generator) -> torch.Tensor:
    """The denoising loss for images ``(B, C, H, W)`` in [0, 1] and their prompts (scalar): MSE between
    the UNet output and :func:`training_target` for the scheduler's ``prediction_type``."""
    with gen.autocast():
        return _denoising_loss(gen, images, prompts, g)


def _denoising_loss(
    gen: Generator, images: torch.Tensor, prompts: list[str], g: torch.Generator
) -> torch.Tensor:
    """:func:`train_step`'s loss in the current autocast context."""
    x0 = gen.encode_images(images)
    b = x0.shape[0]
    t = torch.randint(0, gen.scheduler.config.num_train_timesteps, (b,), generator=g).to(x0.device)
    noise = torch.randn(x0.shape, generator=g).to(x0)
    a = gen.scheduler.alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(b, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    states = gen.encode_prompt(prompts)
    pred = gen.unet(x_t, t, states).sample
    target = training_target(gen.scheduler.config.prediction_type, x0, noise, a)
    return F.mse_loss(pred.float(), target.float())


@dataclass
class _Training:
    """What a checkpoint restores: the models, optimizer, EMA, step count and training seconds."""

    gen: Generator
    opt: torch.optim.Optimizer
    ema: _EMA
    params: list[torch.Tensor]
    step: int = 0
    elapsed: float = 0.0
    loss: float = 0.0  # smoothed training loss (kept in the checkpoint)

    def save(self, path: Path) -> None:
        state = {
            "unet": self.gen.unet.state_dict(),
            "text_encoder": self.gen.text_encoder.state_dict(),
            "opt": self.opt.state_dict(),
            "ema": self.ema.shadow,
            "step": self.step,
            "elapsed": self.elapsed,
            "loss": self.loss,
        }
        atomic_torch_save(path, state)


def _start_training(cfg: PretrainConfig, ckpt_path: Path, device: torch.device) -> _Training:
    """A fresh tiny generator (or ``init_from``'s weights) and its optimizer, resumed from ``ckpt_path``."""
    sched = {"prediction_type": cfg.prediction_type, "timestep_spacing": cfg.timestep_spacing}
    gen = Generator.build_tiny(channels=cfg.channels, seed=cfg.seed, scheduler_overrides=sched).to(device)
    gen.defaults = {"steps": cfg.sample_steps, "cfg": cfg.guidance_scale, "prompt": EVAL_TEMPLATE}
    params_u = [p for p in gen.unet.parameters()]
    params_t = [p for p in gen.text_encoder.parameters()]
    opt = torch.optim.AdamW(
        [{"params": params_u, "lr": cfg.lr}, {"params": params_t, "lr": cfg.text_lr}], weight_decay=0.0
    )
    params = params_u + params_t
    ema = _EMA(params, cfg.ema_decay)
    if cfg.init_from is not None and not ckpt_path.exists():
        _warm_start(gen, cfg.init_from)
        ema = _EMA(params, cfg.ema_decay)
    tr = _Training(gen, opt, ema, params)
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        gen.unet.load_state_dict(ck["unet"])
        gen.text_encoder.load_state_dict(ck["text_encoder"])
        opt.load_state_dict(ck["opt"])
        for s, v in zip(ema.shadow, ck["ema"], strict=True):
            s.copy_(v)
        tr.step, tr.elapsed, tr.loss = ck["step"], ck["elapsed"], float(ck.get("loss", 0.0))
        print(f"resuming at step {tr.step}", flush=True)
    return tr


def _optimizer_step(tr: _Training, cfg: PretrainConfig, captioner: AttributeCaptioner, device) -> None:
    """One step on a fresh public batch, seeded by the step index (a resumed run sees the same data)."""
    rng = random.Random(tr.step * 7919 + cfg.seed)
    images, prompts = public_batch(
        cfg.batch_size,
        10_000_000 * (cfg.seed + 1) + 3 * tr.step,
        tuple(cfg.mix),
        captioner,
        rng,
        cfg.channels,
    )
    prompts = ["" if rng.random() < cfg.cond_dropout else p for p in prompts]
    g = torch.Generator().manual_seed(item_seed(cfg.seed, tr.step))
    for group, base in zip(tr.opt.param_groups, (cfg.lr, cfg.text_lr), strict=True):
        group["lr"] = base * _lr_factor(tr.step, cfg)
    loss = train_step(tr.gen, images.to(device), prompts, g)
    tr.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tr.params, cfg.grad_clip)
    tr.opt.step()
    tr.ema.update(tr.step)
    tr.step += 1
    tr.loss = 0.98 * tr.loss + 0.02 * loss.item() if tr.step > 1 else loss.item()


def _log_progress(tr: _Training, cfg: PretrainConfig, pub_clf, log_path: Path) -> bool:
    """Append the loss (and every ``eval_every`` steps a quick CAS of the EMA weights) to the train
    log; returns whether it evaluated."""
    rec = {"step": tr.step, "loss": round(tr.loss, 5), "elapsed": round(tr.elapsed, 1)}
    evaluate = cfg.eval_every > 0 and (tr.step % cfg.eval_every == 0 or tr.step == cfg.steps)
    if evaluate:
        tr.ema.swap()
        tr.gen.eval()
        cas, _, _, _ = measure_cas(
            tr.gen, pub_clf, cfg.eval_per_class, steps=cfg.sample_steps, cfg=cfg.guidance_scale, seed=1
        )
        tr.ema.swap()
        tr.gen.unet.train()
        tr.gen.text_encoder.train()
        rec["cas_public_quick"] = round(cas, 4)
    with open(log_path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)
    return evaluate


def _train(tr: _Training, cfg: PretrainConfig, run_dir: Path, device) -> None:
    """Train up to ``cfg.steps``, logging every 50 steps and checkpointing every few minutes."""
    pub_clf = None
    if cfg.eval_every > 0 and tr.step < cfg.steps:
        pub_clf, _ = public_cas_classifier(
            run_dir, cfg.public_classifier_train, cfg.seed, device, cfg.public_classifier_epochs, cfg.channels
        )
    captioner = AttributeCaptioner()
    tr.gen.unet.train()
    tr.gen.text_encoder.train()
    t_last_ck = time.time()
    t_start = time.time() - tr.elapsed
    while tr.step < cfg.steps:
        _optimizer_step(tr, cfg, captioner, device)
        tr.elapsed = time.time() - t_start
        if tr.step % 50 == 0 or tr.step == cfg.steps:
            if _log_progress(tr, cfg, pub_clf, run_dir / "train_log.jsonl"):
                t_start = time.time() - tr.elapsed  # evaluation time is not training time
        if time.time() - t_last_ck > 60 * cfg.checkpoint_minutes or tr.step == cfg.steps:
            tr.save(run_dir / "checkpoint.pt")
            t_last_ck = time.time()


def _final_cas(gen: Generator, cfg: PretrainConfig, run_dir: Path, device) -> dict:
    """CAS public/private on one set of generated images, scored by both classifiers (a colour model:
    public only, the digits teacher reads grey); keeps a grid."""
    clf, info = public_cas_classifier(
        run_dir, cfg.public_classifier_train, cfg.seed, device, cfg.public_classifier_epochs, cfg.channels
    )
    cas, per, images, secs = measure_cas(
        gen, clf, cfg.cas_per_class, steps=cfg.sample_steps, cfg=cfg.guidance_scale, seed=12345
    )
    atomic_torch_save(run_dir / "grid_images.pt", images[:: max(1, cfg.cas_per_class // 10)].clone())
    private = {}
    if cfg.channels == 1:
        teacher, _ = obtain_teacher(cfg.teacher, run_dir, device=device)
        _, labels = class_prompts(cfg.cas_per_class)
        cas_p, per_p = classification_accuracy_score(teacher, images, labels, per_class=True, num_classes=10)
        private = {"cas_private": cas_p, **{f"cas_private_{DIGIT_NAMES[i]}": v for i, v in enumerate(per_p)}}
    return {
        "cas_public": cas,
        **{f"cas_public_{DIGIT_NAMES[i]}": v for i, v in enumerate(per)},
        **private,
        "public_classifier_acc": info["public_classifier_acc"],
        "cas_images": len(images),
        "cas_steps": cfg.sample_steps,
        "cas_cfg": cfg.guidance_scale,
        "cas_sampling_seconds": secs,
        "cas_images_per_second": len(images) / secs,
    }


def run(cfg: PretrainConfig, out: Path) -> dict:
    """Pretrain, evaluate (CAS public/private), write weights + grid; metrics in ``out/metrics.json``."""
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise UserError("pretrain needs steps >= 1 and batch_size >= 2")
    if cfg.channels not in (1, 3):
        raise UserError(f"pretrain makes grey (channels=1) or colour (channels=3) models, not {cfg.channels}")
    if len(cfg.mix) != 3 or min(cfg.mix) < 0 or sum(cfg.mix[1:]) >= 1:
        raise UserError(
            f"mix must be three shares >= 0 (digits, glyphs, procedural) with digits > 0, got {cfg.mix}"
        )
    torch.set_num_threads(max(1, cfg.threads))
    cfg = resolve_teacher(cfg, "digits")  # cas_private is measured on the private digits
    # the CFG scale only sets the stored sampling default and where CAS is measured: changing it in a
    # finished folder re-measures without retraining
    run_ = Run(out, cfg, resumable=("guidance_scale",))
    device = resolve_device(cfg.device)
    tr = _start_training(cfg, run_.dir / "checkpoint.pt", device)
    _train(tr, cfg, run_.dir, device)

    # the EMA weights are what ships: write them as the embedded generator, reload, measure
    tr.ema.swap()
    tr.gen.eval()
    weights = run_.dir / EMBEDDED_FILES[cfg.channels]
    provenance = {
        "command": f"modelmine pretrain --out {out}",
        "config": config_to_dict(cfg),
        "train_seconds": round(tr.elapsed, 1),
        "data": "public corpus only: font glyphs (digits, letters, symbols) and procedural images"
        + (", colourised" if cfg.channels == 3 else ""),
    }
    tr.gen.save_embedded(weights, extra={"provenance": provenance})
    gen = Generator.embedded(weights).to(device)
    metrics = {"train_seconds": tr.elapsed, "steps": tr.step, "final_loss": tr.loss}
    metrics |= run_.stage(f"cas_cfg{cfg.guidance_scale:g}", lambda: _final_cas(gen, cfg, run_.dir, device))
    grid = torch.load(run_.dir / "grid_images.pt", weights_only=True)
    save_grid(run_.dir / "samples.png", grid, nrow=10)
    if cfg.ship:
        ASSETS.mkdir(parents=True, exist_ok=True)
        for src in (weights, weights.with_suffix(".json"), embedded_tokenizer_path(weights)):
            shutil.copyfile(src, ASSETS / src.name)
    return run_.log_metrics(**metrics)
