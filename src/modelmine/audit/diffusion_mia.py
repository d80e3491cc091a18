"""Membership inference against a fine-tuned diffusion model: was a candidate image trained on?

Both attacks score images ``x0`` (encoded to latents for a latent model) with the prompt ``c`` they
would have been trained with, ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) n``, ``a`` the scheduler's
``alphas_cumprod``; a higher score means "member".

**Loss** (the denoising-loss test, calibrated by the pretrained model): a fine-tuned model denoises
its own training images better than the model it started from does, while how hard an image is to
denoise at all cancels out:

    s_loss(x0) = mean_{t in T, n} ||eps_pre(x_t, t, c) - n||^2 - ||eps_ft(x_t, t, c) - n||^2

over the fixed ``timesteps`` (fractions of the training steps) and ``num_noise`` seeded draws ``n``,
the same for every image; a LoRA is one UNet, its adapter off for ``eps_pre``.

**PIA** (Kong, Li, Zhang, Wang, Cao, "An Efficient Membership Inference Attack for the Diffusion
Model by Proximal Initialization", ICLR 2024): the noise is the model's own output at ``t = 0``,
``eps_0 = eps_ft(x0, 0, c)``, and with ``x_t`` built from it,

    s_PIA(x0) = -|| eps_ft(x_t, t, c) - eps_0 ||_p,   p = 4 (the paper's l4 norm),

two UNet calls per image at one ``t``. Chosen over SecMI (Duan et al., ICML 2023), the other
published attack for this setting, because SecMI inverts each image through many deterministic
steps, where PIA needs one query at ``t = 0`` and one at ``t``; it uses the fine-tuned model alone.

Both run in ``modelmine audit generator`` (a TCKR run's LoRA) and in ``modelmine extract`` (any
``--base`` / ``--finetuned`` pair with real non-members), from :class:`MiaSettings`.

Shapes: images ``(N, C, H, W)`` in [0, 1] in, scores ``(N,)`` out; batches of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..diffusion.generator import Generator
from ..diffusion.guidance import Conditioning, lora_disabled, predict_eps, train_timesteps
from ..metrics import membership_metrics, reported_fprs


@dataclass
class MiaSettings:
    """The membership attacks' settings, shared by the commands that run them."""

    membership: bool = True  # run the loss attack and PIA (members against real non-members)
    mia_timesteps: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3])  # fractions of T (loss)
    mia_num_noise: int = 2  # noise draws per timestep (loss)
    pia_timestep: float = 0.2  # fraction of T (PIA)


def membership_attacks(
    cfg: MiaSettings, gen: Generator, members: torch.Tensor, nonmembers: torch.Tensor,
    prompts: Sequence[str], seed: int = 0, base: Generator | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:  # fmt: skip
    """Both attacks on ``members`` ``(N, C, H, W)`` against ``nonmembers`` ``(M, C, H, W)``, image i
    prompted with ``prompts[i]`` (members first): ``mia_loss_*`` and ``mia_pia_*`` (AUC, TPR at the
    FPRs the non-members allow) and the scores ``(N + M,)`` with ``is_member``."""
    cand = torch.cat([members, nonmembers])
    is_member = torch.arange(len(cand)) < len(members)
    scores = {
        "loss": loss_scores(gen, cand, prompts, timesteps=cfg.mia_timesteps, num_noise=cfg.mia_num_noise,
                            seed=seed, base=base),
        "pia": pia_scores(gen, cand, prompts, timestep=cfg.pia_timestep),
    }  # fmt: skip
    fprs = reported_fprs(len(nonmembers))
    metrics = {
        k: v
        for name, sc in scores.items()
        for k, v in membership_metrics(sc, is_member, f"mia_{name}_", fprs).items()
    }
    return metrics, {**scores, "is_member": is_member}


def _noisy(gen: Generator, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    a = gen.scheduler.alphas_cumprod[t].to(x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@torch.inference_mode()
def loss_scores(
    gen: Generator, images: torch.Tensor, prompts: Sequence[str], *, timesteps: Sequence[float],
    num_noise: int = 2, seed: int = 0, batch_size: int = 64, base: Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """``s_loss`` of the module docstring for each image. ``gen`` is the fine-tuned model (its LoRA
    switched off for ``eps_pre`` when ``base`` is None), ``base`` the pretrained one otherwise."""
    out = []
    steps = train_timesteps(gen, timesteps)
    for i in range(0, len(images), batch_size):
        x0 = gen.encode_images(images[i : i + batch_size].to(gen.device)).to(gen.dtype)
        c = Conditioning(gen.encode_prompt(list(prompts[i : i + batch_size])).to(gen.dtype))
        total = torch.zeros(len(x0), device=x0.device)
        for j, t in enumerate(steps):
            for k in range(num_noise):
                g = torch.Generator().manual_seed(
                    seed * 1_000_003 + 1_009 * j + k
                )  # same noise per image slot
                n = torch.randn(x0.shape[1:], generator=g).to(x0).expand_as(x0)
                x_t = _noisy(gen, x0, t, n)
                with gen.autocast():
                    ft = (predict_eps(gen, x_t, t, c) - n).float().pow(2).flatten(1).mean(1)
                    with lora_disabled(gen.unet) if base is None else nullcontext():
                        pre = (predict_eps(base or gen, x_t, t, c) - n).float().pow(2).flatten(1).mean(1)
                total += pre - ft
        out.append((total / (len(steps) * num_noise)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.inference_mode()
def pia_scores(
    gen: Generator, images: torch.Tensor, prompts: Sequence[str], *, timestep: float = 0.2, p: float = 4.0,
    batch_size: int = 64,
) -> torch.Tensor:  # fmt: skip
    """``s_PIA`` of the module docstring for each image, at ``t = timestep x`` the training steps."""
    (t,) = train_timesteps(gen, [timestep])
    out = []
    for i in range(0, len(images), batch_size):
        x0 = gen.encode_images(images[i : i + batch_size].to(gen.device)).to(gen.dtype)
        c = Conditioning(gen.encode_prompt(list(prompts[i : i + batch_size])).to(gen.dtype))
        with gen.autocast():
            eps0 = predict_eps(gen, x0, 0, c)
            eps_t = predict_eps(gen, _noisy(gen, x0, t, eps0), t, c)
        out.append(-(eps_t - eps0).float().flatten(1).norm(p=p, dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0)
