"""DDIM sampler: determinism, reference equality with diffusers' DDIMScheduler, guides, gradients."""

import pytest
import torch

from _tiny import tiny
from modelmine.diffusion.guidance import (
    CorrectXt,
    LossGradient,
    Prediction,
    cfg_eps_fn,
    encode_conditioning,
)
from modelmine.diffusion.sampler import ddim_loop, ddim_schedule, ddim_timesteps, sample

PROMPTS = ["a photo of digit three", "seven: thin upright"]


def test_deterministic_with_seed_and_eta():
    gen = tiny()
    for eta in (0.0, 1.0):
        a = sample(gen, PROMPTS, steps=4, cfg=2.0, seed=7, eta=eta)
        b = sample(gen, PROMPTS, steps=4, cfg=2.0, seed=7, eta=eta)
        c = sample(gen, PROMPTS, steps=4, cfg=2.0, seed=8, eta=eta)
        assert a.shape == (2, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
        assert torch.equal(a, b) and not torch.equal(a, c)


V_TRAILING = {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}  # the colour model's


@pytest.mark.parametrize("scheduler", [{}, V_TRAILING], ids=["epsilon", "v-trailing"])
def test_matches_diffusers_ddim_scheduler(scheduler):
    from diffusers import DDIMScheduler

    gen = tiny(seed=1, **scheduler)
    ours = sample(gen, PROMPTS, steps=5, cfg=1.0, seed=3, output="latents")
    sched = DDIMScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(5)
    x = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        e = gen.encode_prompt(PROMPTS)
        for t in sched.timesteps:
            eps = gen.unet(x, t, e).sample
            x = sched.step(eps, t, x, eta=0.0).prev_sample
    # v goes through eps in float32: at t = 999 (a = 2.4e-9) eps's rounding, divided by sqrt(a),
    # moves x0_hat by ~1e-3 of its size, where diffusers computes x0 = sqrt(a) x_t - sqrt(1 - a) v
    assert torch.allclose(ours, x, atol=1e-3 if scheduler else 1e-5)
    ts, step = ddim_timesteps(gen, 5)
    assert ts == [int(t) for t in sched.timesteps] and step == 200
    assert ts[0] == (999 if scheduler else 801)  # trailing starts at the last training timestep


def test_v_prediction_at_zero_snr_survives_half_precision():
    """At t = 999 of the cosine schedule (a = 2.4e-9) x0_hat is -v; converting v to eps in bfloat16
    would round sqrt(a) v away and leave x0_hat = 0."""
    from modelmine.diffusion.generator import GeneratorOptions
    from modelmine.diffusion.guidance import predict_eps
    from modelmine.diffusion.sampler import ddim_step

    x0 = {}
    for dtype in ("float32", "bfloat16"):
        gen = tiny(seed=2, **V_TRAILING).configure(GeneratorOptions(dtype=dtype))
        x = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(0)).to(gen.dtype)
        with torch.no_grad(), gen.autocast():
            c = encode_conditioning(gen, PROMPTS, 1.0)
            eps = predict_eps(gen, x, 999, c)
            x0[dtype] = ddim_step(ddim_schedule(gen, 4), Prediction(x, eps), 999)[1].float()
    assert x0["float32"].abs().mean() > 0.05  # a real prediction, not zero
    assert (x0["bfloat16"] - x0["float32"]).abs().max() < 0.1


def test_gradient_guidance_moves_output_in_expected_direction():
    gen = tiny(seed=2)
    base = sample(gen, PROMPTS, steps=5, cfg=2.0, seed=0)
    # loss = brightness of the predicted image: descending it must make images darker, and back
    darker = sample(
        gen, PROMPTS, steps=5, cfg=2.0, seed=0, guidance=[LossGradient(lambda im, t: im.sum(), 0.5)]
    )
    brighter = sample(
        gen, PROMPTS, steps=5, cfg=2.0, seed=0, guidance=[LossGradient(lambda im, t: -im.sum(), 0.5)]
    )
    assert darker.mean() < base.mean() - 0.02
    assert brighter.mean() > base.mean() + 0.02
    # through the UNet: the same direction
    through = LossGradient(lambda im, t: im.sum(), 0.5, through_unet=True)
    assert sample(gen, PROMPTS, steps=5, cfg=2.0, seed=0, guidance=[through]).mean() < base.mean() - 0.02


def test_loop_with_a_replaced_eps_and_callback():
    from diffusers import DDIMScheduler

    gen = tiny(seed=2)
    gen.scheduler = DDIMScheduler.from_config(gen.scheduler.config, clip_sample=False)
    seen = []
    calls = lambda i, t, x, x0: seen.append((i, t, x.shape, x0.shape))  # noqa: E731
    x = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(0))
    zero = ddim_loop(
        lambda x_t, t: Prediction(x_t, torch.zeros_like(x_t)), x, ddim_schedule(gen, 3), callback=calls
    )
    # with eps = 0 every DDIM step only rescales x by sqrt(a_prev / a_t)
    ac = gen.scheduler.alphas_cumprod.double()
    ts, step = ddim_timesteps(gen, 3)
    for t in ts:
        prev = ac[t - step] if t - step >= 0 else ac[0]
        x = x * (prev / ac[t]).sqrt().float()
    assert torch.allclose(zero, x, atol=1e-5)
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][1] == ts[0]


def _decoded_sum_grad(gen, x):
    """grad_x of sum(decode(x)), the correction's loss in the tests below."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(gen.decode(x).sum(), x)
    return g


def test_x_t_correction_moves_the_state_the_unet_sees_and_can_skip_the_last_step():
    gen = tiny(seed=2)
    c = encode_conditioning(gen, PROMPTS, cfg=2.0)
    ts, _ = ddim_timesteps(gen, 3)
    outer, inner = [], []  # the loop's state, and the state the UNet predicts at

    def unet(x_t, t):
        inner.append(x_t.detach().clone())
        return cfg_eps_fn(gen, c)(x_t, t)

    def recorded(x_t, t):
        outer.append(x_t.detach().clone())
        return corrected(x_t, t)

    loss = lambda im, t: im.sum()  # noqa: E731
    corrected = CorrectXt(loss, 0.1, t_min=ts[-1] + 1)(unet, gen, c)  # no correction on the last step
    seen = []
    x = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(0))
    ddim_loop(recorded, x, ddim_schedule(gen, 3), callback=lambda i, t, x_t, x0: seen.append(x_t))
    for k in range(2):
        assert not torch.equal(inner[k], outer[k])
        assert torch.allclose(inner[k], outer[k] - 0.1 * _decoded_sum_grad(gen, outer[k]), atol=1e-6)
        assert torch.equal(seen[k], inner[k])  # the DDIM update proceeds from the corrected state
    assert torch.equal(inner[2], outer[2]) and torch.equal(seen[2], outer[2])
    # one step: the same as an unguided step from the corrected start
    one = ddim_schedule(gen, 1)
    guided = ddim_loop(CorrectXt(loss, 0.1)(cfg_eps_fn(gen, c), gen, c), x, one)
    start = x - 0.1 * _decoded_sum_grad(gen, x)
    assert torch.allclose(guided, ddim_loop(cfg_eps_fn(gen, c), start, one), atol=1e-6)


def test_x_t_correction_per_timestep_and_normalised():
    """A mapping gives each timestep its own step size (absent: uncorrected); ``normalize`` makes the
    step the correction's RMS along the gradient's direction; a zero gradient corrects nothing."""
    gen = tiny(seed=2)
    c = encode_conditioning(gen, PROMPTS, cfg=2.0)
    ts, _ = ddim_timesteps(gen, 3)
    seen = []

    def unet(x_t, t):
        seen.append(x_t.detach().clone())
        return cfg_eps_fn(gen, c)(x_t, t)

    loss = lambda im, t: im.sum()  # noqa: E731
    guide = CorrectXt(loss, {ts[0]: 0.2}, normalize=True)
    assert [guide.step_at(t) for t in ts] == [0.2, 0.0, 0.0]
    x = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(0))
    guide(unet, gen, c)(x, ts[0])
    guide(unet, gen, c)(x, ts[1])
    g = _decoded_sum_grad(gen, x)
    assert torch.allclose(x - seen[0], 0.2 * g / g.pow(2).mean().sqrt(), atol=1e-6)
    assert (x - seen[0]).pow(2).mean().sqrt().item() == pytest.approx(0.2, rel=1e-5)
    assert torch.equal(seen[1], x)  # ts[1] is not in the mapping
    flat = CorrectXt(lambda im, t: im.sum() * 0, 0.2, normalize=True)
    flat(unet, gen, c)(x, ts[0])
    assert torch.equal(seen[2], x)


def test_grad_steps_1_reaches_prompt_embeds():
    gen = tiny(seed=3)
    gen.requires_grad_(False)
    with torch.no_grad():
        emb = gen.encode_prompt(PROMPTS)
    emb = emb.clone().requires_grad_(True)
    images = sample(gen, emb, steps=3, cfg=2.0, seed=0, grad_steps=1)
    assert images.requires_grad
    images.mean().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    # without grad_steps nothing is kept
    assert not sample(gen, emb.detach(), steps=2, seed=0).requires_grad


def test_grad_steps_keeps_the_graph_through_several_steps():
    gen = tiny(seed=3)
    gen.requires_grad_(False)
    with torch.no_grad():
        emb = gen.encode_prompt(PROMPTS)
    direction = torch.randn(emb.shape, generator=torch.Generator().manual_seed(0))
    guide = [LossGradient(lambda im, t: im.sum(), 0.1)]  # the graph survives guidance too

    def grad_along(**kw) -> float:
        e = emb.clone().requires_grad_(True)
        sample(gen, e, steps=3, cfg=2.0, seed=0, guidance=guide, **kw).sum().backward()
        return float((e.grad * direction).sum())

    full, last = grad_along(grad_steps=3), grad_along(grad_steps=1)
    h = 1e-3
    up = sample(gen, emb + h * direction, steps=3, cfg=2.0, seed=0, guidance=guide)
    down = sample(gen, emb - h * direction, steps=3, cfg=2.0, seed=0, guidance=guide)
    numeric = float((up.sum() - down.sum()) / (2 * h))
    assert abs(full - numeric) < 0.1 * abs(numeric)
    assert abs(last - full) > 0.5 * abs(full)  # the last step alone sees a small part of it


@pytest.mark.parametrize("steps", [4, 20])
def test_dpmpp_2m_matches_diffusers_step_by_step(sd_folder, steps):
    """Our DPM-Solver++(2M) loop equals diffusers' DPMSolverMultistepScheduler on the same noise,
    latent by latent, on an SD-format folder (v-prediction: the loop works on the converted eps)."""
    from diffusers import DPMSolverMultistepScheduler

    from modelmine.diffusion.generator import Generator
    from modelmine.diffusion.sampler import dpm_schedule, dpmpp_2m_loop

    gen = Generator.from_pretrained(str(sd_folder("sd2-v")))
    sched = DPMSolverMultistepScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(steps)
    x0 = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        e = gen.encode_prompt(PROMPTS)
        theirs, ours_steps = x0.clone(), []
        for t in sched.timesteps:
            theirs = sched.step(gen.unet(theirs, t, e).sample, t, theirs).prev_sample
        c = encode_conditioning(gen, PROMPTS, 1.0)
        ours = dpmpp_2m_loop(cfg_eps_fn(gen, c), x0.clone(), dpm_schedule(gen, steps),
                             callback=lambda i, t, x, x0h: ours_steps.append(t))  # fmt: skip
    assert ours_steps == [int(t) for t in sched.timesteps]
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    assert not torch.allclose(
        ours, sample(gen, PROMPTS, steps=steps, cfg=1.0, seed=3, output="latents"), atol=1e-3
    )
