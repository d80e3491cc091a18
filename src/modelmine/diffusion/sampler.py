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
from diffusers import DDIMScheduler
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
) -> torch.Tensor:
    """Generate one image per prompt with DDIM: :func:`ddim_loop` over the CFG prediction, wrapped
    by each of ``guidance`` in order.

    Args:
        prompts: ``B`` strings, or text states ``(B, L, D)``.
        steps: DDIM steps. ``cfg``: classifier-free guidance scale (1 = conditional only); None
            takes the generator's stored default (see :func:`~.guidance.encode_conditioning`).
        seed: seeds the initial noise and the ``eta`` noise (CPU generator: identical on any device).
        grad_steps: keep the graph through the last ``grad_steps`` steps and the decoder, so the
            images are differentiable w.r.t. the text states (0: nothing is recorded).
        latents: starting noise ``(B, c, h, w)`` instead of seeded noise.
        output: ``"images"`` ``(B, C, H, W)`` in [0, 1] or ``"latents"`` ``(B, c, h, w)``.
    """
    grad_steps = grad_steps if torch.is_grad_enabled() else 0
    with gen.autocast():  # the generator's precision (GeneratorOptions.dtype); float32: nothing
        with torch.set_grad_enabled(grad_steps > 0):  # text states need a graph only if one is kept
            c = encode_conditioning(gen, prompts, cfg)
            eps_fn = cfg_eps_fn(gen, c)
            for guide in guidance:
                eps_fn = guide(eps_fn, gen, c)
        schedule = ddim_schedule(gen, steps)
        g = torch.Generator().manual_seed(seed)
        if latents is None:
            latents = torch.randn((c.cond.shape[0], *gen.latent_shape), generator=g)
        x = ddim_loop(
            eps_fn, latents.to(gen.device, gen.dtype), schedule, eta=eta, generator=g, grad_steps=grad_steps
        )
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
