"""Our own DDIM loop over a noise-prediction function, and a prompts -> images front end.

DDIM (Song et al., 2021, "Denoising Diffusion Implicit Models", eq. 12):

    x0_hat  = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x_prev  = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma_t^2) eps + sigma_t z,
    sigma_t = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)

with ``a`` the scheduler's ``alphas_cumprod`` and the timesteps of diffusers' ``DDIMScheduler``
(so ``eta=0``, ``cfg=1`` reproduces ``DDIMScheduler.step`` exactly; a test checks this). When the
scheduler config of a pixel-space model has ``clip_sample`` (the embedded model), ``x0_hat`` is
clamped to ``[-clip_sample_range, clip_sample_range]`` before the update, as ``DDIMScheduler``
does; latents are never clamped, whatever the config says, as in ``StableDiffusionPipeline``
(which sets ``clip_sample=False`` on its scheduler), so the loop equals the pipeline on SD folders.

DPM-Solver++(2M) (Lu et al., 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Alg. 2) works on the data prediction ``x0_hat`` and ``lambda = log(alpha /
sigma)`` with ``alpha = sqrt(a)``, ``sigma = sqrt(1 - a)``, ``h = lambda_t - lambda_s``:

    first order:  x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s
    second order: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) (D0 + D1 / 2),
                  D0 = x0_s, D1 = (x0_s - x0_prev) h / h_prev                          (midpoint)

on the timesteps and sigmas of diffusers' ``DPMSolverMultistepScheduler`` for the model's scheduler
config, first order on the first step and on the last (as that scheduler's ``lower_order_final``
and ``final_sigmas_type="zero"``), so it reproduces that scheduler step by step (a test checks
this). :func:`dpmpp_2m_loop` takes the same ``eps_fn`` as the DDIM loop, so CFG, model guidance,
DAG's correction of ``x_t`` and loss gradients wrap it unchanged; ``sample(..., sampler=...)``
picks the loop.

As in k-diffusion, :func:`ddim_loop` knows nothing about prompts or guidance: it calls one eps
function ``eps_fn(x_t, t) -> Prediction(x_t, eps)`` per step (:mod:`modelmine.diffusion.guidance`)
and updates from the state the prediction was made at (a guide may have corrected it). CFG, model
guidance, DAG and classifier guidance are wrappers that build that function. :func:`sample` is the
front end: encode prompts, build the CFG eps function, wrap it with the given guides, run the loop.

Gradients are the loop's business, not the caller's: every step runs under ``no_grad`` except the
last ``grad_steps``, which keep the graph (from the text states and ``x_t`` to the output), so DDIS
can train tokens through sampling at a memory cost fixed by ``grad_steps`` (the pipeline's
``__call__`` always runs under ``no_grad``, which is why we have our own loop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from ..errors import UserError
from .generator import Generator
from .guidance import EpsFn, Guide, Prediction, cfg_eps_fn, encode_conditioning, sqrt_alpha_bars


def ddim_timesteps(gen: Generator, steps: int) -> tuple[list[int], int]:
    """DDIM timesteps (descending) as diffusers' ``DDIMScheduler.set_timesteps``, and the step size."""

    if steps < 1:
        raise UserError(f"sampling steps must be >= 1, got {steps}")
    sched = DDIMScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(steps)
    return [int(t) for t in sched.timesteps], sched.config.num_train_timesteps // steps


@dataclass(frozen=True)
class DDIMSchedule:
    """What the loop needs from the scheduler: timesteps (descending) and ``alphas_cumprod`` ``(T,)``
    in float64; ``final_alpha`` is ``a_prev`` of the last step; ``clip`` bounds ``x0_hat`` (or None)."""

    timesteps: list[int]
    step: int
    alphas_cumprod: torch.Tensor
    final_alpha: torch.Tensor
    clip: float | None

    def alpha_prev(self, t: int) -> torch.Tensor:
        return self.alphas_cumprod[t - self.step] if t - self.step >= 0 else self.final_alpha


def ddim_schedule(gen: Generator, steps: int) -> DDIMSchedule:
    """The :class:`DDIMSchedule` of ``gen``'s scheduler for ``steps`` DDIM steps, on ``gen``'s device."""
    timesteps, step = ddim_timesteps(gen, steps)
    sc = gen.scheduler.config
    ac = gen.scheduler.alphas_cumprod.to(device=gen.device, dtype=torch.float64)
    final = ac[0] if not sc.set_alpha_to_one else torch.tensor(1.0, dtype=ac.dtype)
    clamps = sc.get("clip_sample", False) and gen.vae is None  # never a latent (as the SD pipeline)
    clip = float(sc.get("clip_sample_range", 1.0)) if clamps else None
    return DDIMSchedule(timesteps, step, ac, final, clip)


def ddim_step(
    s: DDIMSchedule, pred: Prediction, t: int, eta: float = 0.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update from ``pred.x_t`` with ``pred.eps``: ``(x_prev, x0_hat)``, both ``(B, c, h, w)``."""
    x, eps = pred
    a_t, a_prev = s.alphas_cumprod[t], s.alpha_prev(t)
    sa, s1a = sqrt_alpha_bars(s.alphas_cumprod, t, x)
    x0_hat = (x - s1a * eps) / sa
    if s.clip is not None:  # pixel-space models: keep the prediction in the data range (as DDPM)
        x0_hat = x0_hat.clamp(-s.clip, s.clip)
    sigma = eta * math.sqrt(float((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))) if eta > 0 else 0.0
    dir_coef = math.sqrt(max(float(1 - a_prev) - sigma**2, 0.0))
    x_prev = a_prev.sqrt().to(x.dtype) * x0_hat + dir_coef * eps
    if sigma > 0:
        x_prev = x_prev + sigma * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x_prev, x0_hat


def ddim_loop(
    eps_fn: EpsFn,
    x: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    grad_steps: int = 0,
    callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise ``x`` ``(B, c, h, w)`` (``x_T``) to ``x_0`` ``(B, c, h, w)`` with DDIM over ``eps_fn``.

    Args:
        eta: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise, drawn from ``generator``.
        grad_steps: the last ``grad_steps`` steps keep the autograd graph (when grad mode is on at
            the call); all others run under ``no_grad``. Memory grows with it.
        callback: ``callback(i, t, x_t, x0_hat)`` after each step's prediction (detached; ``x_t``
            the state the prediction was made at).
    """
    n = len(schedule.timesteps)
    grad_steps = grad_steps if torch.is_grad_enabled() else 0
    for i, t in enumerate(tqdm(schedule.timesteps, desc="sample", disable=not progress, leave=False)):
        keep_graph = i >= n - grad_steps
        with torch.set_grad_enabled(keep_graph):
            pred = eps_fn(x, t)
            x_prev, x0_hat = ddim_step(schedule, pred, t, eta, generator)
        if callback is not None:
            callback(i, t, pred.x_t.detach(), x0_hat.detach())
        x = x_prev if keep_graph else x_prev.detach()
    return x


@dataclass(frozen=True)
class DPMSchedule:
    """The timesteps (descending) of diffusers' ``DPMSolverMultistepScheduler`` for a scheduler
    config, ``sigmas`` ``(n + 1,)`` float64 (``sqrt((1 - a) / a)``, the last the final one), whether the
    last step is first order, and the ``x0_hat`` clamp of pixel-space models (or None)."""

    timesteps: list[int]
    sigmas: torch.Tensor
    lower_order_final: bool
    clip: float | None


def sampler_timesteps(gen: Generator, steps: int) -> list[int]:
    """The timesteps (descending) ``sample`` visits with ``gen``'s sampler for ``steps`` steps."""
    return dpm_schedule(gen, steps).timesteps if gen.sampler == "dpmpp_2m" else ddim_timesteps(gen, steps)[0]


def dpm_schedule(gen: Generator, steps: int) -> DPMSchedule:
    """The :class:`DPMSchedule` of ``gen``'s scheduler config for ``steps`` solver steps."""
    if steps < 1:
        raise UserError(f"sampling steps must be >= 1, got {steps}")
    sched = DPMSolverMultistepScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(steps)
    c = sched.config
    last_first_order = (
        c.euler_at_final or (c.lower_order_final and steps < 15) or c.final_sigmas_type == "zero"
    )
    return DPMSchedule(
        [int(t) for t in sched.timesteps], sched.sigmas.to(torch.float64), bool(last_first_order),
        ddim_schedule(gen, 1).clip,
    )  # fmt: skip


def dpmpp_2m_loop(
    eps_fn: EpsFn,
    x: torch.Tensor,
    schedule: DPMSchedule,
    *,
    grad_steps: int = 0,
    callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise ``x`` ``(B, c, h, w)`` to ``x_0`` with DPM-Solver++(2M) over ``eps_fn``; ``grad_steps``
    and ``callback`` as in :func:`ddim_loop`."""
    n = len(schedule.timesteps)
    grad_steps = grad_steps if torch.is_grad_enabled() else 0
    prev: tuple[torch.Tensor, torch.Tensor] | None = None  # (x0_hat, lambda) of the previous step
    for i, t in enumerate(tqdm(schedule.timesteps, desc="sample", disable=not progress, leave=False)):
        keep_graph = i >= n - grad_steps
        with torch.set_grad_enabled(keep_graph):
            x_s, eps = eps_fn(x, t)
            sig_s, sig_t = schedule.sigmas[i], schedule.sigmas[i + 1]
            alpha_s, sigma_s = 1 / (sig_s**2 + 1).sqrt(), sig_s / (sig_s**2 + 1).sqrt()
            alpha_t, sigma_t = 1 / (sig_t**2 + 1).sqrt(), sig_t / (sig_t**2 + 1).sqrt()
            x0_hat = (x_s - sigma_s.to(x_s.dtype) * eps) / alpha_s.to(x_s.dtype)
            if schedule.clip is not None:
                x0_hat = x0_hat.clamp(-schedule.clip, schedule.clip)
            lam_s, lam_t = alpha_s.log() - sigma_s.log(), alpha_t.log() - sigma_t.log()
            h = lam_t - lam_s
            coef = (alpha_t * torch.expm1(-h)).to(x_s.dtype)
            x_next = (sigma_t / sigma_s).to(x_s.dtype) * x_s - coef * x0_hat
            if prev is not None and not (i == n - 1 and schedule.lower_order_final):
                d1 = (x0_hat - prev[0]) * (h / (lam_s - prev[1])).to(x_s.dtype)
                x_next = x_next - 0.5 * coef * d1
        if callback is not None:
            callback(i, t, x_s.detach(), x0_hat.detach())
        prev = (x0_hat if keep_graph else x0_hat.detach(), lam_s)
        x = x_next if keep_graph else x_next.detach()
    return x


def sample(
    gen: Generator,
    prompts: Sequence[str] | torch.Tensor,
    *,
    steps: int = 30,
    cfg: float | None = None,
    guidance: Sequence[Guide] = (),
    seed: int = 0,
    eta: float = 0.0,
    grad_steps: int = 0,
    latents: torch.Tensor | None = None,
    output: Literal["images", "latents"] = "images",
    sampler: Literal["ddim", "dpmpp_2m"] | None = None,
) -> torch.Tensor:
    """Generate one image per prompt: :func:`ddim_loop` (or, ``sampler="dpmpp_2m"``,
    :func:`dpmpp_2m_loop`) over the CFG prediction, wrapped by each of ``guidance`` in order.

    Args:
        prompts: ``B`` strings, or text states ``(B, L, D)``.
        steps: DDIM steps. ``cfg``: classifier-free guidance scale (1 = conditional only); None
            takes the generator's stored default (see :func:`~.guidance.encode_conditioning`).
        seed: seeds the initial noise and the ``eta`` noise (CPU generator: identical on any device).
        grad_steps: keep the graph through the last ``grad_steps`` steps and the decoder, so the
            images are differentiable w.r.t. the text states (0: nothing is recorded).
        latents: starting noise ``(B, c, h, w)`` instead of seeded noise.
        output: ``"images"`` ``(B, C, H, W)`` in [0, 1] or ``"latents"`` ``(B, c, h, w)``.
        sampler: ``"ddim"`` or ``"dpmpp_2m"`` (``eta`` applies to DDIM only); None: the generator's
            (``GeneratorOptions.sampler``, DDIM unless a command's config says otherwise).
    """
    grad_steps = grad_steps if torch.is_grad_enabled() else 0
    with gen.autocast():  # the generator's precision (GeneratorOptions.dtype); float32: nothing
        with torch.set_grad_enabled(grad_steps > 0):  # text states need a graph only if one is kept
            c = encode_conditioning(gen, prompts, cfg)
            eps_fn = cfg_eps_fn(gen, c)
            for guide in guidance:
                eps_fn = guide(eps_fn, gen, c)
        g = torch.Generator().manual_seed(seed)
        if latents is None:
            latents = torch.randn((c.cond.shape[0], *gen.latent_shape), generator=g)
        start = latents.to(gen.device, gen.dtype)
        sampler = sampler or gen.sampler
        if sampler == "dpmpp_2m":
            x = dpmpp_2m_loop(eps_fn, start, dpm_schedule(gen, steps), grad_steps=grad_steps)
        elif sampler == "ddim":
            x = ddim_loop(
                eps_fn, start, ddim_schedule(gen, steps), eta=eta, generator=g, grad_steps=grad_steps
            )
        else:
            raise UserError(f"sampler must be ddim or dpmpp_2m, got {sampler!r}")
        if output == "latents":
            return x
        with torch.set_grad_enabled(grad_steps > 0):
            return gen.decode(x)


def sample_batched(
    gen: Generator,
    prompts: Sequence[str],
    *,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    **kw,
) -> torch.Tensor:
    """:func:`sample` over many prompts in chunks of ``batch_size`` (chunk ``k`` uses seed ``seed + k``).

    Returns images ``(N, C, H, W)`` in [0, 1] on the CPU.
    """
    out = []
    chunks = range(0, len(prompts), batch_size)
    for k, i in enumerate(tqdm(chunks, desc="generate", disable=not progress, leave=False)):
        out.append(sample(gen, prompts[i : i + batch_size], seed=seed + k, **kw).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
