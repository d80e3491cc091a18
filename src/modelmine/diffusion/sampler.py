"""Our own DDIM sampling loop with classifier-free guidance and pluggable guidance functions.

DDIM (Song et al., 2021, "Denoising Diffusion Implicit Models", eq. 12):

    x0_hat  = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x_prev  = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma_t^2) eps + sigma_t z,
    sigma_t = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)

with ``a`` the scheduler's ``alphas_cumprod`` and the timesteps of diffusers' ``DDIMScheduler``
(so ``eta=0``, ``cfg=1`` reproduces ``DDIMScheduler.step`` exactly; a test checks this). When the
scheduler config has ``clip_sample`` (the embedded pixel-space model), ``x0_hat`` is clamped to
``[-clip_sample_range, clip_sample_range]`` before the update, as ``DDIMScheduler`` does.
Classifier-free guidance (Ho & Salimans, 2022): ``eps = eps_u + cfg (eps_c - eps_u)``, both halves in
one batched UNet call. Guidance functions (:mod:`modelmine.diffusion.guidance`) then adjust ``eps``
at every step: a returned gradient of a loss on ``x_t`` is applied as classifier guidance
(Dhariwal & Nichol, 2021: ``eps += sqrt(1 - a_t) grad``), a returned ``ReplaceEps`` replaces it.

Why not the pipeline's ``__call__``: it runs under ``no_grad``; DDIS/CAT need gradients through
sampling (``grad_last_step=True`` keeps the graph of the last step only, from the text embeddings
and ``x_t`` to the image, which is what token training needs at a fixed memory cost).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from .generator import Generator
from .guidance import GuidanceFn, apply_guidance


def ddim_timesteps(gen: Generator, steps: int) -> tuple[list[int], int]:
    """DDIM timesteps (descending) as diffusers' ``DDIMScheduler.set_timesteps``, and the step size."""
    from diffusers import DDIMScheduler

    if steps < 1:
        raise UserError(f"sampling steps must be >= 1, got {steps}")
    sched = DDIMScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(steps)
    return [int(t) for t in sched.timesteps], sched.config.num_train_timesteps // steps


@dataclass
class SampleContext:
    """What guidance functions may need besides (x_t, t, x0_hat, eps); given to ``fn.bind(ctx)``.

    ``cond``/``uncond``: text states ``(B, L, D)``; ``predict_eps(x_t, t)`` runs the (CFG-combined)
    noise prediction with the current UNet state (e.g. inside ``disable_lora``), shape ``(B, c, h, w)``.
    """

    gen: Generator
    cond: torch.Tensor
    uncond: torch.Tensor | None
    cfg: float
    timesteps: list[int]

    def predict_eps(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        return predict_eps(self.gen, x_t, t, self.cond, self.uncond, self.cfg)


def predict_eps(
    gen: Generator,
    x_t: torch.Tensor,
    t: int,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    cfg: float,
) -> torch.Tensor:
    """CFG noise prediction ``(B, c, h, w)`` for ``x_t`` ``(B, c, h, w)`` at integer timestep ``t``.

    ``uncond=None`` or ``cfg == 1`` skips the unconditional half. Handles epsilon, v and sample
    prediction types by converting to epsilon.
    """
    b = x_t.shape[0]
    tt = torch.full((b,), t, device=x_t.device, dtype=torch.long)
    if uncond is None or cfg == 1.0:
        out = gen.unet(x_t, tt, cond).sample
    else:
        both = gen.unet(torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([uncond, cond])).sample
        out_u, out_c = both.chunk(2)
        out = out_u + cfg * (out_c - out_u)
    kind = gen.scheduler.config.prediction_type
    if kind == "epsilon":
        return out
    a = gen.scheduler.alphas_cumprod[t].to(x_t)
    if kind == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x_t
    if kind == "sample":
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()
    raise UserError(f"unsupported prediction type '{kind}'")


def _embed(gen: Generator, prompts: Sequence[str], n: int) -> torch.Tensor:
    e = gen.encode_prompt(list(prompts))
    return e.expand(n, -1, -1) if e.shape[0] == 1 and n > 1 else e


def sample(
    gen: Generator,
    prompts: Sequence[str] | None,
    *,
    steps: int = 30,
    cfg: float | None = None,
    guidance: Sequence[GuidanceFn] = (),
    seed: int = 0,
    eta: float = 0.0,
    negative_prompt: str = "",
    grad_last_step: bool = False,
    grad_steps: int = 0,
    callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_embeds: torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
    output: Literal["images", "latents", "both"] = "images",
    progress: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Generate one image per prompt with DDIM.

    Args:
        prompts: ``B`` strings (or None with ``prompt_embeds`` ``(B, L, D)``).
        steps: DDIM steps. ``cfg``: classifier-free guidance scale (1 = conditional only); None
            takes the generator's stored default (``gen.defaults["cfg"]``: 1.5 for the embedded
            model), else 3.0.
        guidance: guidance functions (see :mod:`modelmine.diffusion.guidance`), applied in order.
        seed: seeds the initial noise and the ``eta`` noise (CPU generator: identical on any device).
        eta: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise.
        negative_prompt: the unconditional prompt for CFG (``""`` as in training dropout).
        grad_last_step: run all steps but the last without a graph, the last with one, so the
            returned images are differentiable w.r.t. ``prompt_embeds`` / the text encoder.
        grad_steps: keep the graph through the last ``grad_steps`` steps instead (``grad_last_step``
            is ``grad_steps=1``); memory grows with it.
        callback: ``callback(i, t, x_t, x0_hat)`` after each step's prediction.
        latents: starting noise ``(B, c, h, w)`` instead of seeded noise.
        output: ``"images"`` ``(B, C, H, W)`` in [0, 1], ``"latents"`` ``(B, c, h, w)``, or ``"both"``.
    """
    device, dtype = gen.device, gen.dtype
    cfg = float(gen.defaults.get("cfg", 3.0)) if cfg is None else cfg
    if prompt_embeds is None:
        if not prompts:
            raise UserError("sample() needs at least one prompt")
        n = len(prompts)
    else:
        n = prompt_embeds.shape[0]
    timesteps, step = ddim_timesteps(gen, steps)
    g = torch.Generator().manual_seed(seed)
    if latents is None:
        latents = torch.randn((n, *gen.latent_shape), generator=g)
    x = latents.to(device, dtype)
    ac = gen.scheduler.alphas_cumprod.to(device=device, dtype=torch.float64)
    final_ac = ac[0] if not gen.scheduler.config.set_alpha_to_one else torch.tensor(1.0, dtype=ac.dtype)
    guidance = list(guidance)
    sc = gen.scheduler.config
    clip = float(sc.get("clip_sample_range", 1.0)) if sc.get("clip_sample", False) else None
    need_unet_grad = any(getattr(fn, "through_unet", False) for fn in guidance)

    grad_steps = max(grad_steps, 1 if grad_last_step else 0)
    text_grad = grad_steps > 0 and torch.is_grad_enabled()
    with torch.set_grad_enabled(text_grad):
        cond = prompt_embeds if prompt_embeds is not None else _embed(gen, prompts, n)  # type: ignore[arg-type]
        uncond = None
        if cfg != 1.0:
            uncond = negative_embeds if negative_embeds is not None else _embed(gen, [negative_prompt], n)
            if uncond.shape[0] == 1 and n > 1:
                uncond = uncond.expand(n, -1, -1)
    cond, uncond = cond.to(dtype), uncond.to(dtype) if uncond is not None else None
    ctx = SampleContext(gen, cond, uncond, cfg, timesteps)
    for fn in guidance:
        if hasattr(fn, "bind"):
            fn.bind(ctx)

    for i, t in enumerate(tqdm(timesteps, desc="sample", disable=not progress, leave=False)):
        a_t = ac[t]
        a_prev = ac[t - step] if t - step >= 0 else final_ac
        keep_graph = text_grad and i >= len(timesteps) - grad_steps
        if guidance and not x.requires_grad:
            x = x.detach().requires_grad_(True)
        grad_ctx = torch.enable_grad() if (keep_graph or need_unet_grad) else torch.no_grad()
        with grad_ctx:
            c_t = cond if keep_graph else cond.detach()
            u_t = None if uncond is None else (uncond if keep_graph else uncond.detach())
            eps = predict_eps(gen, x, t, c_t, u_t, cfg)
        sa, s1a = a_t.sqrt().to(dtype), (1 - a_t).sqrt().to(dtype)
        if guidance:
            with torch.enable_grad():
                x0_hat = (x - s1a * (eps if need_unet_grad else eps.detach())) / sa
                eps = apply_guidance(guidance, x, t, x0_hat, eps, s1a, sa)
        x0_hat = (x - s1a * eps) / sa
        if clip is not None:  # pixel-space models: keep the prediction in the data range (as DDPM)
            x0_hat = x0_hat.clamp(-clip, clip)
        if callback is not None:
            callback(i, t, x.detach(), x0_hat.detach())
        sigma = eta * math.sqrt(float((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))) if eta > 0 else 0.0
        dir_coef = math.sqrt(max(float(1 - a_prev) - sigma**2, 0.0))
        x_prev = a_prev.sqrt().to(dtype) * x0_hat + dir_coef * eps
        if sigma > 0:
            x_prev = x_prev + sigma * torch.randn(x.shape, generator=g).to(device, dtype)
        x = x_prev if keep_graph else x_prev.detach()

    if output == "latents":
        return x
    with contextlib.nullcontext() if text_grad else torch.no_grad():
        images = gen.decode(x)
    return (images, x) if output == "both" else images


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
        with torch.no_grad():
            imgs = sample(gen, prompts[i : i + batch_size], seed=seed + k, **kw)
        out.append(imgs.float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
