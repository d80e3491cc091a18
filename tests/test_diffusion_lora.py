"""LoRA (peft, diffusers format), adapter switching, model guidance, full fine-tuning, the CLI."""

import json

import pytest
import torch

from _tiny import tiny
from modelmine.cli import main
from modelmine.diffusion.finetune import LORA_WEIGHTS, add_lora, load_lora, merge_lora, save_lora
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.guidance import ModelGuidance, lora_disabled
from modelmine.diffusion.sampler import sample

PROMPTS = ["a photo of digit three", "seven: thin upright"]


def _randomise_lora(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _eps(gen):
    x = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return gen.unet(x, torch.tensor([100, 700]), gen.encode_prompt(PROMPTS)).sample


WIDE = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "time_emb_proj", "proj_in", "proj_out")


@pytest.mark.parametrize("targets", [None, WIDE], ids=["attention", "attention+convs"])
def test_lora_save_load_identical_and_diffusers_format(tmp_path, targets):
    from safetensors import safe_open

    gen = tiny()
    base = _eps(gen)
    params = add_lora(gen.unet, rank=4, alpha=8.0, **({"target_modules": targets} if targets else {}))
    assert params and all(p.requires_grad for p in params)
    assert torch.equal(_eps(gen), base)  # B = 0 at init
    _randomise_lora(gen.unet)
    tuned = _eps(gen)
    assert not torch.allclose(tuned, base)
    path = save_lora(gen.unet, tmp_path / "lora")
    assert path.name == LORA_WEIGHTS
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        meta = json.loads(f.metadata()["lora_adapter_metadata"])
    assert len(keys) == len(params)  # every adapter tensor saved, one key format (peft's)
    assert all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    assert meta["unet.r"] == 4 and meta["unet.lora_alpha"] == 8.0

    fresh = tiny()
    load_lora(fresh, tmp_path / "lora")
    assert sum(1 for n, _ in fresh.unet.named_parameters() if "lora_" in n) == len(params)
    assert torch.allclose(_eps(fresh), tuned, atol=1e-6)


def test_diffusers_pipeline_load_lora_weights(tmp_path):
    from diffusers import StableDiffusionPipeline

    gen = tiny()
    add_lora(gen.unet, rank=2, alpha=2.0)
    _randomise_lora(gen.unet, seed=3)
    tuned = _eps(gen)
    save_lora(gen.unet, tmp_path)

    fresh = tiny()
    pipe = StableDiffusionPipeline(
        vae=None, text_encoder=fresh.text_encoder, tokenizer=fresh.tokenizer, unet=fresh.unet,
        scheduler=fresh.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.load_lora_weights(str(tmp_path))  # diffusers' own loader, default weight name
    assert torch.allclose(_eps(fresh), tuned, atol=1e-6)


def test_merged_equals_unmerged_and_adapter_switch():
    gen = tiny()
    base = _eps(gen)
    add_lora(gen.unet, rank=4, alpha=4.0)
    _randomise_lora(gen.unet, seed=1)
    tuned = _eps(gen)
    with lora_disabled(gen.unet):
        assert torch.allclose(_eps(gen), base, atol=1e-6)
    assert torch.allclose(_eps(gen), tuned, atol=1e-6)  # restored
    merge_lora(gen)
    assert torch.allclose(_eps(gen), tuned, atol=1e-5)
    assert not any("lora_" in n for n, _ in gen.unet.named_parameters())


def test_model_guidance_interpolates_between_base_and_finetuned():
    gen = tiny()
    base = sample(gen, PROMPTS, steps=3, seed=0, output="latents")
    add_lora(gen.unet, rank=4, alpha=4.0)
    _randomise_lora(gen.unet, seed=2)
    tuned = sample(gen, PROMPTS, steps=3, seed=0, output="latents")
    w1 = sample(gen, PROMPTS, steps=3, seed=0, guidance=[ModelGuidance(w=1.0)], output="latents")
    w0 = sample(gen, PROMPTS, steps=3, seed=0, guidance=[ModelGuidance(w=0.0)], output="latents")
    assert torch.allclose(w1, tuned, atol=1e-5)  # w = 1: the fine-tuned model
    assert torch.allclose(w0, base, atol=1e-5)  # w = 0: the pretrained model
    w2 = sample(gen, PROMPTS, steps=3, seed=0, guidance=[ModelGuidance(w=2.0)], output="latents")
    assert not torch.allclose(w2, tuned, atol=1e-3)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_finetune_command(tmp_path, tiny_folder, mode, monkeypatch):
    root, _ = tiny_folder
    gen = tiny()
    gen.save_embedded(tmp_path / "gen" / "embedded_generator.safetensors")
    from modelmine.diffusion import finetune as ft

    monkeypatch.setattr(
        ft.Generator,
        "from_pretrained",
        classmethod(
            lambda cls, p, **kw: Generator.embedded(tmp_path / "gen" / "embedded_generator.safetensors")
        ),
    )
    out = tmp_path / f"ft_{mode}"
    args = ["finetune", "--out", str(out), "--data", str(root), "--mode", mode,
            "--set", f"{mode}.steps=3", "--set", f"{mode}.batch_size=4", "--set", "prior_images_per_class=2"]  # fmt: skip
    if mode == "full":
        args += ["--set", "prior_preservation=true"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 3 and m["num_images"] == 12 and (out / "samples.png").exists()
    if mode == "lora":
        fresh = tiny()
        load_lora(fresh, out / "lora")
    else:
        assert (out / "embedded_generator.safetensors").exists() or (out / "generator").exists()
