"""Guidance functions for :func:`modelmine.diffusion.sampler.sample`.

Protocol
--------
A guidance function is any callable ``fn(x_t, t, x0_hat, eps)`` called once per DDIM step, after
classifier-free guidance, with

- ``x_t``   ``(B, c, h, w)``: the current diffusion state, a leaf tensor with ``requires_grad=True``;
- ``t``     ``int``: the training timestep (0..T-1);
- ``x0_hat`` ``(B, c, h, w)``: the predicted clean state ``(x_t - sqrt(1-a_t) eps) / sqrt(a_t)``,
  differentiable w.r.t. ``x_t`` (``eps`` treated as a constant, the cheap "x0 guidance"; set the
  attribute ``fn.through_unet = True`` to get the gradient through the UNet as well, ~3x cost);
  decode it with ``ctx.gen.decode(x0_hat)`` for image-space losses (pixels or VAE latents);
- ``eps``   ``(B, c, h, w)``: the current noise prediction (after earlier guidance functions).

It runs under ``torch.enable_grad()`` and returns one of

- ``None``: no change (e.g. the function only guides some steps);
- a tensor ``(B, c, h, w)``, or ``Gradient(grad)``: the gradient ``dL/dx_t`` of a loss ``L`` to
  *decrease*, scale included. The sampler applies it as classifier guidance
  (Dhariwal & Nichol, 2021): ``eps <- eps + sqrt(1 - a_t) * grad``, i.e. the score moves along -dL;
- ``ReplaceEps(eps_new)``: the noise prediction to use instead (e.g. model guidance).

Functions are applied in list order, each seeing the ``eps``/``x0_hat`` left by the previous one.
If a function has a ``bind(ctx)`` method it is called once before sampling with a
:class:`~modelmine.diffusion.sampler.SampleContext` (generator, text states ``cond``/``uncond``,
``cfg``, timesteps, and ``ctx.predict_eps(x_t, t)`` for extra UNet calls).

Provided here
-------------
- :class:`LossGuidance`: any differentiable image loss -> gradient (the building block).
- :func:`classifier_guidance`: cross-entropy of a classifier on the decoded ``x0_hat``.
- :func:`bn_statistics_guidance`: DDIS's Domain Alignment Guidance (Li et al., 2024), the
  DeepInversion BatchNorm-statistics loss of a classifier on the decoded ``x0_hat``.
- :class:`ModelGuidance`: FineXtract (Wu et al., 2024) model guidance,
  ``eps = eps_pre + w (eps_ft - eps_pre) + lambda eps_pre`` (:func:`model_guidance_eps`), with ONE
  UNet whose LoRA adapter is switched off for ``eps_pre`` (:func:`lora_disabled`), or with a
  separate pretrained generator (full fine-tuning).

The method-specific guidance (DAG schedules, FineXtract's clustering) lives in the methods; these
are the shared mechanics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F


class GuidanceFn(Protocol):
    def __call__(
        self, x_t: torch.Tensor, t: int, x0_hat: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor | Gradient | ReplaceEps | None: ...


@dataclass
class Gradient:
    """``dL/dx_t`` ``(B, c, h, w)`` of a loss to decrease (scale already applied)."""

    grad: torch.Tensor


@dataclass
class ReplaceEps:
    """A replacement noise prediction ``(B, c, h, w)``."""

    eps: torch.Tensor


def apply_guidance(
    fns: list,
    x_t: torch.Tensor,
    t: int,
    x0_hat: torch.Tensor,
    eps: torch.Tensor,
    s1a: torch.Tensor,
    sa: torch.Tensor,
) -> torch.Tensor:
    """Run guidance functions in order; returns the final ``eps`` (detached unless a graph is kept)."""
    for fn in fns:
        r = fn(x_t, t, x0_hat, eps)
        if r is None:
            continue
        if isinstance(r, ReplaceEps):
            eps = r.eps
        else:
            grad = r.grad if isinstance(r, Gradient) else r
            eps = eps + s1a * grad.detach()
        x0_hat = (x_t - s1a * eps.detach()) / sa
    return eps


class LossGuidance:
    """Gradient guidance from ``loss_fn(images (B, C, H, W) in [0, 1], t) -> scalar``.

    The loss is taken on ``ctx.gen.decode(x0_hat)`` (through the VAE decoder for latent models),
    scaled by ``scale`` and applied on steps where ``t_min <= t <= t_max``.
    """

    def __init__(
        self,
        loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
        scale: float = 1.0,
        t_min: int = 0,
        t_max: int = 10**9,
        through_unet: bool = False,
    ):
        self.loss_fn = loss_fn
        self.scale = scale
        self.t_min, self.t_max = t_min, t_max
        self.through_unet = through_unet
        self.decode: Callable[[torch.Tensor], torch.Tensor] = lambda z: ((z + 1) / 2).clamp(0, 1)

    def bind(self, ctx: Any) -> None:
        self.decode = ctx.gen.decode

    def __call__(self, x_t, t, x0_hat, eps):
        if not (self.t_min <= t <= self.t_max) or self.scale == 0:
            return None
        loss = self.loss_fn(self.decode(x0_hat), t)
        (grad,) = torch.autograd.grad(loss * self.scale, x_t)
        return Gradient(grad)


def classifier_guidance(
    classifier: nn.Module, labels: torch.Tensor, scale: float = 1.0, **kw
) -> LossGuidance:
    """Push samples toward ``labels`` ``(B,)``: cross-entropy (summed) of ``classifier`` on ``x0_hat``."""
    classifier.eval()

    def loss(images: torch.Tensor, t: int) -> torch.Tensor:
        return F.cross_entropy(classifier(images), labels.to(images.device), reduction="sum")

    return LossGuidance(loss, scale, **kw)


class BNStatistics:
    """Forward hooks that collect ``||mu_batch - mu_BN|| + ||var_batch - var_BN||`` per BatchNorm layer
    (DeepInversion's feature-statistics loss). Use as a context manager around a forward pass."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.losses: list[torch.Tensor] = []
        self._hooks: list[Any] = []

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        self.losses.append(
            torch.linalg.vector_norm(mean - module.running_mean, 2)
            + torch.linalg.vector_norm(var - module.running_var, 2)
        )

    def __enter__(self) -> BNStatistics:
        self.losses = []
        self._hooks = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._hooks:
            h.remove()

    def total(self) -> torch.Tensor:
        return torch.stack(self.losses).sum()


def bn_statistics_guidance(classifier: nn.Module, scale: float = 1.0, **kw) -> LossGuidance:
    """DAG (DDIS): BatchNorm-statistics loss of ``classifier`` (eval mode) on the decoded ``x0_hat``."""
    classifier.eval()
    stats = BNStatistics(classifier)
    if not stats.layers:
        raise ValueError("bn_statistics_guidance needs a classifier with BatchNorm layers")

    def loss(images: torch.Tensor, t: int) -> torch.Tensor:
        with stats:
            classifier(images)
        return stats.total()

    return LossGuidance(loss, scale, **kw)


@contextlib.contextmanager
def lora_disabled(unet: nn.Module) -> Iterator[None]:
    """Temporarily switch off every (peft) LoRA adapter of ``unet``; restores the previous state.

    Works for diffusers' ``load_lora_weights``/``add_adapter`` UNets and for peft ``PeftModel`` s.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

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


def model_guidance_eps(
    eps_pre: torch.Tensor, eps_ft: torch.Tensor, w: float, lam: float = 0.0
) -> torch.Tensor:
    """FineXtract's model guidance ``eps_pre + w (eps_ft - eps_pre) + lam * eps_pre``, shapes ``(B, c, h, w)``."""
    return eps_pre + w * (eps_ft - eps_pre) + lam * eps_pre


class ModelGuidance:
    """FineXtract model guidance: ``eps = eps_pre + w (eps_ft - eps_pre) + lambda * eps_pre``.

    ``eps_ft`` is the sampler's prediction (the fine-tuned model). ``eps_pre`` comes from

    - ``base=None``: the same UNet with its LoRA adapters switched off (:func:`lora_disabled`), so
      the UNet is in memory once;
    - ``base=Generator``: a separate pretrained generator (full / DreamBooth fine-tuning), with the
      same latent shape and on the same device.

    ``pre_prompt=None`` gives ``eps_pre`` the sampler's text states and CFG scale (the pretrained
    model's prediction for the same prompts; with ``base``, the text states come from the
    fine-tuned generator's text encoder). A string (FineXtract: ``""``) conditions the pretrained
    model on that prompt alone, without CFG, as the paper's ``eps_pre(x_t, empty)``; then sample
    with ``cfg=1`` so that the sampler's ``eps`` is ``eps_ft(x_t, c)``. Either way one extra UNet
    evaluation per step. ``w`` > 1 extrapolates toward the fine-tuning data; ``lam`` is
    FineXtract's correction term.
    """

    def __init__(self, w: float = 2.0, lam: float = 0.0, base: Any = None, pre_prompt: str | None = None):
        self.w, self.lam = w, lam
        self.base, self.pre_prompt = base, pre_prompt
        self.ctx: Any = None
        self._pre_states: torch.Tensor | None = None

    def bind(self, ctx: Any) -> None:
        self.ctx = ctx
        self._pre_states = None
        if self.base is not None and tuple(self.base.latent_shape) != tuple(ctx.gen.latent_shape):
            raise ValueError(
                f"base generator makes {tuple(self.base.latent_shape)} states, the fine-tuned one "
                f"{tuple(ctx.gen.latent_shape)}"
            )
        if self.pre_prompt is not None:
            with torch.no_grad(), self._pretrained():
                gen = self.base if self.base is not None else ctx.gen
                states = gen.encode_prompt([self.pre_prompt])
            self._pre_states = states.expand(ctx.cond.shape[0], -1, -1).to(ctx.cond.dtype)

    def _pretrained(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if self.base is not None else lora_disabled(self.ctx.gen.unet)

    def __call__(self, x_t, t, x0_hat, eps):
        from .sampler import predict_eps  # the sampler imports this module

        gen = self.base if self.base is not None else self.ctx.gen
        with torch.no_grad(), self._pretrained():
            if self._pre_states is not None:
                eps_pre = predict_eps(gen, x_t.detach(), t, self._pre_states, None, 1.0)
            else:
                eps_pre = predict_eps(gen, x_t.detach(), t, self.ctx.cond, self.ctx.uncond, self.ctx.cfg)
        return ReplaceEps(model_guidance_eps(eps_pre, eps, self.w, self.lam))
