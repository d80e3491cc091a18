"""Noise-prediction functions for :func:`modelmine.diffusion.sampler.ddim_loop`, and guides that wrap them.

Protocol
--------
The DDIM loop runs one **eps function** (:data:`EpsFn`), ``eps_fn(x_t, t) -> Prediction``, per step:

- ``x_t`` ``(B, c, h, w)``: the loop's diffusion state; ``t`` ``int``: the training timestep (0..T-1);
- it returns a :class:`Prediction` ``(x_t, eps)``: the noise prediction ``eps`` ``(B, c, h, w)`` and
  the state ``x_t`` it was made at. That is the input state, unless a guide corrected the state
  before predicting (:class:`CorrectXt`); the DDIM update then proceeds from the corrected state.

Grad mode is the loop's: it calls the eps function under ``no_grad``, or with gradients on through
the last ``grad_steps`` steps, and the function's result carries a graph exactly then. Guides that
need a loss gradient w.r.t. the state switch gradients on for that computation only and apply it
as a constant; model guidance's extra UNet call never records one.

:func:`cfg_eps_fn` builds the base eps function from a generator's UNet and its text states
(:class:`Conditioning`, classifier-free guidance included). A **guide** (:class:`Guide`) builds a
guided eps function around another one, ``guide(eps_fn, gen, c) -> eps_fn``, and the sampler's
front end applies a list of them in order (each wraps the previous one). Provided:

- :class:`ModelGuidance`: FineXtract (Wu et al., 2024) model guidance,
  ``eps = eps_pre + w (eps_ft - eps_pre) + k eps_pre`` (:func:`model_guidance_eps`), ``eps_ft``
  from the wrapped function, ``eps_pre`` from the same UNet with its LoRA switched off
  (:func:`lora_disabled`) or from a separate pretrained generator;
- :class:`CorrectXt`: a correction of the state *before* the prediction,
  ``x_t <- x_t - s_t * grad_{x_t} L(decode(x_t))``, optionally with the gradient normalised so that
  ``s_t`` is the correction's RMS (the paper form of DDIS's Domain Alignment Guidance); the wrapped
  function predicts at the corrected state;
- :class:`LossGradient`: a loss gradient added *after* the prediction, the classifier-guidance form
  (Dhariwal & Nichol, 2021) ``eps <- eps + sqrt(1 - a_t) * scale * grad_{x_t} L(decode(x0_hat))``,
  with ``x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)`` and ``eps`` held constant (the cheap
  "x0 guidance") or, with ``through_unet``, differentiated through the UNet as well (~3x cost).

Losses ``loss_fn(images, t) -> scalar`` take images ``(B, C, H, W)`` in [0, 1] (``gen.decode``,
through the VAE for latent models). The method-specific pieces (DAG's BatchNorm loss, FineXtract's
clustering) live in the methods; this module imports nothing from the sampler.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn as nn
from peft.tuners.tuners_utils import BaseTunerLayer

from ..errors import UserError
from .generator import Generator

LossFn = Callable[[torch.Tensor, int], torch.Tensor]  # images (B, C, H, W) in [0, 1], t -> scalar


class Prediction(NamedTuple):
    """What an eps function returns: ``eps`` ``(B, c, h, w)`` predicted at state ``x_t`` ``(B, c, h, w)``."""

    x_t: torch.Tensor
    eps: torch.Tensor


EpsFn = Callable[[torch.Tensor, int], Prediction]  # (x_t (B, c, h, w), t) -> Prediction


@dataclass(frozen=True)
class Conditioning:
    """Text states the UNet cross-attends to and how they combine (classifier-free guidance).

    ``cond``/``uncond``: ``(B, L, D)``; ``uncond=None`` or ``cfg == 1`` predicts from ``cond`` alone,
    else ``eps = eps_u + cfg (eps_c - eps_u)`` (Ho & Salimans, 2022).
    """

    cond: torch.Tensor
    uncond: torch.Tensor | None = None
    cfg: float = 1.0


def encode_conditioning(
    gen: Generator, prompts: Sequence[str] | torch.Tensor, cfg: float | None = None, negative_prompt: str = ""
) -> Conditioning:
    """Text states for ``B`` prompts, or the given states ``(B, L, D)``; the unconditional half is
    ``negative_prompt`` (``""`` as in training dropout), encoded once and expanded to ``B``.

    ``cfg=None`` takes the generator's stored default (``gen.defaults["cfg"]``: 1.5 for the embedded
    model), else 3.0. Runs under the caller's grad mode (a graph reaches the text encoder if enabled).
    """
    cfg = float(gen.defaults.get("cfg", 3.0)) if cfg is None else cfg
    if isinstance(prompts, torch.Tensor):
        cond = prompts
    elif not prompts:
        raise UserError("sampling needs at least one prompt")
    else:
        cond = gen.encode_prompt(list(prompts))
    uncond = None
    if cfg != 1.0:
        uncond = gen.encode_prompt([negative_prompt]).expand(cond.shape[0], -1, -1).to(gen.dtype)
    return Conditioning(cond.to(gen.dtype), uncond, cfg)


def predict_eps(gen: Generator, x_t: torch.Tensor, t: int, c: Conditioning) -> torch.Tensor:
    """CFG noise prediction ``(B, c, h, w)`` for ``x_t`` ``(B, c, h, w)`` at integer timestep ``t``.

    Both CFG halves go through one batched UNet call. Epsilon, v and sample prediction types are
    converted to epsilon, in float32 whatever the generator's dtype: where the schedule ends near zero
    SNR (``a`` 2.4e-9 at the cosine schedule's last step) ``eps = sqrt(a) v + sqrt(1 - a) x_t``
    differs from ``x_t`` by less than half precision resolves, and the loop's ``x0_hat = (x_t -
    sqrt(1 - a) eps) / sqrt(a)`` (which is ``-v`` there) would be lost.
    """
    b = x_t.shape[0]
    tt = torch.full((b,), t, device=x_t.device, dtype=torch.long)
    if c.uncond is None or c.cfg == 1.0:
        out = gen.unet(x_t, tt, c.cond).sample
    else:
        both = gen.unet(torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([c.uncond, c.cond])).sample
        out_u, out_c = both.chunk(2)
        out = out_u + c.cfg * (out_c - out_u)
    kind = gen.scheduler.config.prediction_type
    if kind == "epsilon":
        return out
    a = gen.scheduler.alphas_cumprod[t].to(x_t.device, torch.float32)
    out, x_t = out.float(), x_t.float()
    if kind == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x_t
    if kind == "sample":
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()
    raise UserError(f"unsupported prediction type '{kind}'")


def cfg_eps_fn(gen: Generator, c: Conditioning) -> EpsFn:
    """The unguided eps function: ``gen``'s UNet with the text states and CFG scale of ``c``."""

    def eps_fn(x_t: torch.Tensor, t: int) -> Prediction:
        return Prediction(x_t, predict_eps(gen, x_t, t, c))

    return eps_fn


def train_timesteps(gen: Generator, fractions: Sequence[float]) -> list[int]:
    """The training timesteps at ``fractions`` of the schedule: ``int(f T)``, at most ``T - 1``."""
    n_t = gen.scheduler.config.num_train_timesteps
    return [min(n_t - 1, int(f * n_t)) for f in fractions]


def sqrt_alpha_bars(
    alphas_cumprod: torch.Tensor, t: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sqrt(a_t), sqrt(1 - a_t))`` as 0-dim tensors of ``like``'s dtype and device.

    Computed in float64 and rounded once, the same numbers in the loop and in every guide.
    """
    a = alphas_cumprod[t].to(torch.float64)
    return a.sqrt().to(like.device, like.dtype), (1 - a).sqrt().to(like.device, like.dtype)


class Guide(Protocol):
    """Builds a guided eps function around ``eps_fn`` for generator ``gen`` and text states ``c``."""

    def __call__(self, eps_fn: EpsFn, gen: Generator, c: Conditioning) -> EpsFn: ...


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when it already carries a graph (kept steps), else a detached leaf that records one."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


@dataclass(frozen=True)
class LossGradient:
    """Classifier-style guidance: ``eps <- eps + sqrt(1 - a_t) * scale * grad_{x_t} L(decode(x0_hat))``.

    Applied where ``t_min <= t <= t_max``. ``eps`` is a constant in ``x0_hat`` unless
    ``through_unet`` (then the wrapped function is differentiated too). Descending ``L``: the score
    moves along ``-grad L``.
    """

    loss_fn: LossFn
    scale: float = 1.0
    t_min: int = 0
    t_max: int = 10**9
    through_unet: bool = False

    def __call__(self, eps_fn: EpsFn, gen: Generator, c: Conditioning) -> EpsFn:
        def guided(x_t: torch.Tensor, t: int) -> Prediction:
            if not (self.t_min <= t <= self.t_max) or self.scale == 0:
                return eps_fn(x_t, t)
            keep = torch.is_grad_enabled()  # the loop keeps this step's graph: do not free it
            if self.through_unet:
                with torch.enable_grad():
                    x = _leaf(x_t)
                    pred = eps_fn(x, t)
                state, eps = pred.x_t, pred.eps
            else:  # the prediction runs in the loop's grad mode; the gradient treats it as constant
                pred = eps_fn(x_t, t)
                x = _leaf(pred.x_t)
                state, eps = x, pred.eps.detach()
            sa, s1a = sqrt_alpha_bars(gen.scheduler.alphas_cumprod, t, pred.eps)
            with torch.enable_grad():
                loss = self.loss_fn(gen.decode((state - s1a * eps) / sa), t)  # on x0_hat
                (grad,) = torch.autograd.grad(loss * self.scale, x, retain_graph=keep)
            return Prediction(pred.x_t, pred.eps + s1a * grad.detach())

        return guided


@dataclass(frozen=True)
class CorrectXt:
    """A correction before the prediction: ``x_t <- x_t - s_t * d``, ``d = grad_{x_t} L(decode(x_t))``.

    ``step_size`` is ``s_t``: one number for every step, or a mapping from timestep to step size
    (a timestep it does not hold is left uncorrected). With ``normalize``, ``d`` is the gradient
    rescaled to unit root-mean-square over the whole batch, ``grad * sqrt(n) / ||grad||_2`` (``n``
    its number of elements), so that ``s_t`` is the RMS of the correction, whatever the loss's scale
    (a zero gradient: no correction). The wrapped function predicts at the corrected state, and the
    DDIM update proceeds from it. Applied where ``t_min <= t <= t_max``; to leave the last DDIM step
    uncorrected, set ``t_min = ddim_timesteps(gen, steps)[0][-1] + 1`` or leave it out of the mapping.
    """

    loss_fn: LossFn
    step_size: float | Mapping[int, float] = 1.0
    t_min: int = 0
    t_max: int = 10**9
    normalize: bool = False

    def step_at(self, t: int) -> float:
        """``s_t`` (0 outside ``[t_min, t_max]`` and for a timestep the mapping does not hold)."""
        if not (self.t_min <= t <= self.t_max):
            return 0.0
        if isinstance(self.step_size, Mapping):
            return float(self.step_size.get(t, 0.0))
        return float(self.step_size)

    def __call__(self, eps_fn: EpsFn, gen: Generator, c: Conditioning) -> EpsFn:
        def corrected(x_t: torch.Tensor, t: int) -> Prediction:
            step = self.step_at(t)
            if step == 0:
                return eps_fn(x_t, t)
            with torch.enable_grad():
                x = x_t.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.loss_fn(gen.decode(x), t), x)
            if self.normalize:
                norm = torch.linalg.vector_norm(grad.float())
                if norm == 0:
                    return eps_fn(x_t, t)
                grad = (grad.float() * (math.sqrt(grad.numel()) / norm)).to(grad.dtype)
            return eps_fn(x_t - step * grad, t)

        return corrected


@contextlib.contextmanager
def lora_disabled(unet: nn.Module) -> Iterator[None]:
    """Temporarily switch off every (peft) LoRA adapter of ``unet``; restores the previous state.

    Works for diffusers' ``load_lora_weights``/``add_adapter`` UNets and for peft ``PeftModel`` s.
    """

    if hasattr(unet, "disable_adapter") and not hasattr(unet, "disable_adapters"):
        with unet.disable_adapter():  # a peft PeftModel
            yield
        return
    layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    states = [m.disable_adapters for m in layers]
    try:
        for m in layers:
            m.enable_adapters(False)
        yield
    finally:
        for m, was_disabled in zip(layers, states, strict=True):
            m.enable_adapters(not was_disabled)


def model_guidance_eps(eps_pre: torch.Tensor, eps_ft: torch.Tensor, w: float, k: float = 0.0) -> torch.Tensor:
    """FineXtract's model guidance ``eps_pre + w (eps_ft - eps_pre) + k * eps_pre``, shapes ``(B, c, h, w)``."""
    return eps_pre + w * (eps_ft - eps_pre) + k * eps_pre


@dataclass(frozen=True)
class ModelGuidance:
    """FineXtract model guidance: ``eps = eps_pre + w (eps_ft - eps_pre) + k * eps_pre``.

    ``eps_ft`` is the wrapped function's prediction (the fine-tuned model). ``eps_pre`` comes from

    - ``base=None``: the same UNet with its LoRA adapters switched off (:func:`lora_disabled`), so
      the UNet is in memory once;
    - ``base=Generator``: a separate pretrained generator (full / DreamBooth fine-tuning), with the
      same latent shape and on the same device.

    ``pre_prompt=None`` gives ``eps_pre`` the sampler's text states and CFG scale (the pretrained
    model's prediction for the same prompts; with ``base``, the text states come from the
    fine-tuned generator's text encoder). A string (FineXtract: ``""``) conditions the pretrained
    model on that prompt alone, without CFG, as the paper's ``eps_pre(x_t, empty)``; then sample
    with ``cfg=1`` so that the wrapped ``eps`` is ``eps_ft(x_t, c)``. Either way one extra UNet
    evaluation per step, without a graph. ``w`` > 1 extrapolates toward the fine-tuning data
    (the paper's ``1 / lambda``); ``k`` is the official code's correction term ``fix_term``.
    """

    w: float = 2.0
    k: float = 0.0
    base: Generator | None = None
    pre_prompt: str | None = None

    def __call__(self, eps_fn: EpsFn, gen: Generator, c: Conditioning) -> EpsFn:
        if self.base is not None and tuple(self.base.latent_shape) != tuple(gen.latent_shape):
            raise ValueError(
                f"base generator makes {tuple(self.base.latent_shape)} states, the fine-tuned one "
                f"{tuple(gen.latent_shape)}"
            )
        pre_gen = self.base if self.base is not None else gen

        def pretrained() -> contextlib.AbstractContextManager:
            return contextlib.nullcontext() if self.base is not None else lora_disabled(gen.unet)

        pre_c = c
        if self.pre_prompt is not None:
            with torch.no_grad(), pretrained():
                states = pre_gen.encode_prompt([self.pre_prompt])
            pre_c = Conditioning(states.expand(c.cond.shape[0], -1, -1).to(c.cond.dtype))

        def guided(x_t: torch.Tensor, t: int) -> Prediction:
            pred = eps_fn(x_t, t)
            with torch.no_grad(), pretrained():
                eps_pre = predict_eps(pre_gen, pred.x_t.detach(), t, pre_c)
            return Prediction(pred.x_t, model_guidance_eps(eps_pre, pred.eps, self.w, self.k))

        return guided
