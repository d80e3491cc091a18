"""The real Stable Diffusion path on tiny SD-format folders: what diffusers computes is the reference.

Sampler parity with ``StableDiffusionPipeline`` for every style and every ``clip_sample`` entry,
the training target of each ``prediction_type``, the folder's scheduler kept by full fine-tunes,
and model guidance combined in the epsilon parameterisation on the v-prediction folder.
"""

import json

import pytest
import torch

from modelmine.diffusion.finetune import add_lora, train_unet
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.guidance import ModelGuidance, cfg_eps_fn, encode_conditioning
from modelmine.diffusion.pretrain import training_target
from modelmine.diffusion.sampler import ddim_schedule, sample
from modelmine.diffusion.tiny_sd import STYLES

PROMPTS = ["a photo of a red circle", "a drawing of the digit seven"]


def _pipeline(folder):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sched = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, scheduler=sched, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("clip_sample", [None, True, False], ids=["no-entry", "true", "false"])
def test_sampler_equals_the_stable_diffusion_pipeline(sd_folder, style, clip_sample):
    folder = sd_folder(style, clip_sample)
    gen = Generator.from_pretrained(folder)
    assert gen.scheduler.config.clip_sample is False and ddim_schedule(gen, 10).clip is None
    noise = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(gen, PROMPTS, steps=10, cfg=3.0, latents=noise.clone(), output="latents")
        ref = _pipeline(folder)(
            PROMPTS, num_inference_steps=10, guidance_scale=3.0, latents=noise.clone(), output_type="latent"
        ).images
    assert (ours - ref).abs().max() < 1e-4
    # the clamp the pipeline never applies changes these latents: the comparison can see it
    assert (ref.abs() > 1).any()


def test_the_embedded_pixel_model_still_clamps_as_its_config_asks(tiny_generator_path):
    gen = Generator.embedded(tiny_generator_path)
    assert gen.scheduler.config.clip_sample is True and ddim_schedule(gen, 5).clip == 1.0


@pytest.mark.parametrize("style", STYLES)
def test_a_saved_full_model_keeps_the_folder_scheduler(sd_folder, tmp_path, style):
    folder = sd_folder(style, True if style == "sd2-v" else None)
    before = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    Generator.from_pretrained(folder).save_pretrained(tmp_path / "ft")
    after = json.loads((tmp_path / "ft" / "scheduler" / "scheduler_config.json").read_text())
    assert after == before
    index = json.loads((tmp_path / "ft" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", before["_class_name"]]
    back = Generator.from_pretrained(tmp_path / "ft")
    assert back.scheduler.config.clip_sample is False
    assert back.scheduler.config.prediction_type == before.get("prediction_type", "epsilon")


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_training_target_is_what_diffusers_trains_on(kind):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(prediction_type=kind)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([5, 400, 990])
    a = sched.alphas_cumprod[t].view(3, 1, 1, 1)
    expected = {"epsilon": noise, "v_prediction": sched.get_velocity(x0, noise, t), "sample": x0}[kind]
    assert torch.allclose(training_target(kind, x0, noise, a), expected, atol=1e-6)


def _v_loss(gen, images, prompts):
    """The v-prediction loss on fixed timesteps and noise: what the fine-tune should lower."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        x0 = gen.encode_images(images)
        states = gen.encode_prompt(prompts)
        total = 0.0
        for t in (100, 300, 500, 700, 900):
            noise = torch.randn(x0.shape, generator=g)
            a = gen.scheduler.alphas_cumprod[t]
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            out = gen.unet(x_t, torch.full((len(x0),), t), states).sample
            total += torch.nn.functional.mse_loss(out, a.sqrt() * noise - (1 - a).sqrt() * x0).item()
    return total / 5


def test_a_lora_on_the_v_model_lowers_the_v_loss_on_its_images(sd_folder):
    gen = Generator.from_pretrained(sd_folder("sd2-v", False))
    assert gen.scheduler.config.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=g).round()  # four fixed binary patterns
    prompts = ["a photo of a cat", "a photo of a dog", "a red circle", "a blue square"]
    before = _v_loss(gen, images, prompts)
    params = add_lora(gen.unet, rank=4, alpha=4.0, seed=0)
    train_unet(gen, params, images, prompts, steps=60, batch_size=4, lr=3e-3, seed=0)
    after = _v_loss(gen, images, prompts)
    assert after < 0.8 * before, (before, after)


def test_model_guidance_combines_epsilon_on_the_v_model(sd_folder):
    """eps_pre + w (eps_ft - eps_pre), each eps converted from the UNet's v output as diffusers'
    DDIMScheduler does (eps = sqrt(a) v + sqrt(1 - a) x_t)."""
    folder = sd_folder("sd2-v", False)
    pre, ft = Generator.from_pretrained(folder), Generator.from_pretrained(folder)
    with torch.no_grad():
        for p in ft.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        c = encode_conditioning(ft, PROMPTS, cfg=1.0)
        x = torch.randn((2, *ft.latent_shape), generator=torch.Generator().manual_seed(2))
        t = 600
        guided = ModelGuidance(w=3.0, base=pre)(cfg_eps_fn(ft, c), ft, c)(x, t).eps
        a = ft.scheduler.alphas_cumprod[t]
        tt = torch.full((2,), t)

        def eps_from_v(gen):
            v = gen.unet(x, tt, c.cond).sample
            return a.sqrt() * v + (1 - a).sqrt() * x

        e_pre, e_ft = eps_from_v(pre), eps_from_v(ft)
    assert torch.allclose(guided, e_pre + 3.0 * (e_ft - e_pre), atol=1e-5)
    assert not torch.allclose(e_pre, e_ft, atol=1e-3)  # the fine-tune moved the prediction
