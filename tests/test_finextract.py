"""FineXtract: clique clustering, success rate, model guidance (LoRA toggle and two generators),
pickle refusal, and the `extract` / `audit generator` commands end to end (tiny)."""

import json

import pytest
import torch

from _tiny import SMALL_UNET, tiny
from modelmine.audit.extraction import (
    best_matches,
    calibrate_threshold,
    choose_calibrated_threshold,
    cluster_generations,
    cluster_representatives,
    extraction_scores,
    fixed_threshold,
    greedy_cliques,
    largest_clique,
    pixel_features,
    start_noise,
)
from modelmine.cli import main
from modelmine.diffusion.finetune import add_lora, save_lora
from modelmine.diffusion.generator import Generator, checkpoint_kind
from modelmine.diffusion.guidance import (
    Conditioning,
    ModelGuidance,
    Prediction,
    lora_disabled,
    model_guidance_eps,
)
from modelmine.diffusion.sampler import sample
from modelmine.errors import UserError

PROMPT = "a photo of digit three"


# ------------------------------------------------------------------------------------------------
# clustering and scores
# ------------------------------------------------------------------------------------------------
def _block_similarity() -> torch.Tensor:
    """Images {0, 1, 2} alike (0.9), {3, 4} alike (0.8), groups 0.2 apart, image 5 at 0.1 from all."""
    sim = torch.full((6, 6), 0.2)
    sim[:3, :3] = 0.9
    sim[3:5, 3:5] = 0.8
    sim[5, :] = sim[:, 5] = 0.1
    sim.fill_diagonal_(1.0)
    return sim


def test_largest_clique_peels_to_the_dense_core():
    import numpy as np

    adj = np.zeros((6, 6), dtype=bool)
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (4, 0), (4, 1), (4, 5)]:
        adj[i, j] = adj[j, i] = True
    assert largest_clique(adj) == [0, 1, 2, 3]
    alive = np.array([False, True, True, True, True, True])
    assert largest_clique(adj, alive) == [1, 2, 3]
    assert greedy_cliques(adj) == [[0, 1, 2, 3], [4, 5]]  # every node ends in some clique
    assert greedy_cliques(adj, max_cliques=1) == [[0, 1, 2, 3]]


def test_cluster_generations_raises_threshold_until_n_cliques():
    sim = _block_similarity()
    cliques, threshold = cluster_generations(sim, 3)
    # 0.10 (the 25% quantile): one clique; 0.11-0.20: {0..4} and {5}; 0.21: the three groups
    assert cliques == [[0, 1, 2], [3, 4], [5]]
    assert threshold == pytest.approx(0.21)
    cliques2, threshold2 = cluster_generations(sim, 2)
    assert cliques2 == [[0, 1, 2, 3, 4], [5]] and threshold2 == pytest.approx(0.11)
    with pytest.raises(ValueError):
        cluster_generations(sim, 7)
    # the candidate of a clique is its member nearest the mean feature
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.4, 0.1], [5.0, 5.0], [5.0, 6.0], [9.0, 9.0]])
    assert cluster_representatives(feats, cliques).tolist() == [2, 3, 5]


def test_success_rate_is_the_fraction_of_training_images_matched_at_or_above_threshold():
    train = torch.eye(3)  # three training images, orthogonal features
    cands = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])  # copies image 0, half-matches image 1
    best, idx = best_matches(train, cands)
    assert torch.allclose(best, torch.tensor([1.0, 0.8, 0.0])) and idx.tolist()[:2] == [0, 1]
    s = extraction_scores(best, 0.8)
    assert s["success_rate"] == pytest.approx(2 / 3)  # 1.0 and 0.8 count, 0.0 does not
    assert s["avg_similarity"] == pytest.approx(0.6) and "calibrated_success_rate" not in s
    assert extraction_scores(best, 0.81)["success_rate"] == pytest.approx(1 / 3)
    # the paper's rate at the fixed threshold and the calibrated one side by side
    both = extraction_scores(best, 0.8, calibrated_threshold=0.81)
    assert both["success_rate"] == pytest.approx(2 / 3) and both["calibrated_success_rate"] == pytest.approx(
        1 / 3
    )
    # calibration: the quantile of real non-members' best similarity to the training images
    nonmembers = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert calibrate_threshold(train, nonmembers, 1.0) == pytest.approx(1.0)
    assert calibrate_threshold(train, nonmembers, 0.0) == pytest.approx(2**-0.5)
    assert choose_calibrated_threshold(None, 0.0, train, nonmembers) == pytest.approx(2**-0.5)
    assert choose_calibrated_threshold(0.5, 0.0, train, nonmembers) == 0.5  # given: used as is
    assert choose_calibrated_threshold(None, 0.99, train, None) is None  # no non-members: no calibrated rate
    # the fixed thresholds: ours on pixel correlation, the paper's SSCD value for learned features
    assert fixed_threshold("pixels") == 0.95 and fixed_threshold("dino:some/model") == 0.7
    # pixel features: the cosine is the pixel correlation, invariant to brightness and contrast
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    f = pixel_features(torch.cat([x, 0.5 * x + 0.2]))
    assert torch.allclose(f[:2] @ f[2:].T, (f[:2] @ f[:2].T), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# model guidance
# ------------------------------------------------------------------------------------------------
def _randomise_lora(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def _guided_eps(ft, base, w, k):
    """(ModelGuidance's eps, the manual combination) at one state, for ft = fine-tuned generator."""
    x = torch.randn((2, *ft.latent_shape), generator=torch.Generator().manual_seed(1))
    t = 500
    tt = torch.full((2,), t)
    with torch.no_grad():
        cond = ft.encode_prompt([PROMPT] * 2)
        eps_ft = ft.unet(x, tt, cond).sample
        pre = ft if base is None else base
        with lora_disabled(ft.unet) if base is None else torch.no_grad():
            eps_pre = pre.unet(x, tt, pre.encode_prompt([""] * 2)).sample
        guided = ModelGuidance(w, k, base=base, pre_prompt="")(
            lambda x_t, t: Prediction(x_t, eps_ft), ft, Conditioning(cond)
        )
        out = guided(x, t).eps
    manual = eps_pre + w * (eps_ft - eps_pre) + k * eps_pre
    assert not torch.allclose(eps_ft, eps_pre, atol=1e-3)  # the two models really differ
    return out, manual


def test_model_guidance_formula_lora_toggle():
    ft = tiny()
    add_lora(ft.unet, rank=4, alpha=4.0)
    _randomise_lora(ft.unet, seed=2)
    out, manual = _guided_eps(ft, None, w=5.0, k=0.0)
    assert torch.allclose(out, manual, atol=1e-5)
    assert torch.allclose(model_guidance_eps(manual, manual, 3.0, 0.0), manual)
    # through the sampler: w = 1 is the fine-tuned model alone, w = 0 the pretrained one on ""
    z = start_noise(ft.latent_shape, 2, 0, 0)
    w1 = sample(
        ft, [PROMPT] * 2, steps=2, cfg=1.0, latents=z, guidance=[ModelGuidance(1.0, 0.0, pre_prompt="")]
    )
    assert torch.allclose(w1, sample(ft, [PROMPT] * 2, steps=2, cfg=1.0, latents=z), atol=1e-5)
    w0 = sample(
        ft, [PROMPT] * 2, steps=2, cfg=1.0, latents=z, guidance=[ModelGuidance(0.0, 0.0, pre_prompt="")]
    )
    with lora_disabled(ft.unet):
        assert torch.allclose(w0, sample(ft, [""] * 2, steps=2, cfg=1.0, latents=z), atol=1e-5)


def test_model_guidance_formula_two_generators():
    base, ft = tiny(seed=0), tiny(seed=1)  # full fine-tuning: two separate generators
    out, manual = _guided_eps(ft, base, w=3.0, k=-0.02)
    assert torch.allclose(out, manual, atol=1e-5)
    z = start_noise(ft.latent_shape, 2, 0, 0)
    w0 = sample(ft, [PROMPT] * 2, steps=2, cfg=1.0, latents=z, guidance=[ModelGuidance(0.0, 0.0, base, "")])
    assert torch.allclose(w0, sample(base, [""] * 2, steps=2, cfg=1.0, latents=z), atol=1e-5)
    other = Generator.build_tiny(image_size=8, unet_overrides=SMALL_UNET, text_width=32)
    with pytest.raises(ValueError, match="states"):
        sample(ft, [PROMPT], steps=1, guidance=[ModelGuidance(2.0, 0.0, other, "")])


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def test_pickle_checkpoints_are_refused(tmp_path, capsys):
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_lora_weights.bin")
    with pytest.raises(UserError, match="pickle"):
        checkpoint_kind(tmp_path / "pytorch_lora_weights.bin")
    with pytest.raises(UserError, match="pickle"):
        checkpoint_kind(tmp_path)  # a LoRA folder with only a .bin
    (tmp_path / "sd" / "unet").mkdir(parents=True)
    (tmp_path / "sd" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="pickle"):
        checkpoint_kind(tmp_path / "sd")
    with pytest.raises(UserError, match="pickle"):
        Generator.from_pretrained(tmp_path / "sd")  # the one loader refuses them too
    out = tmp_path / "out"
    assert (
        main(["extract", "--out", str(out), "--finetuned", str(tmp_path / "pytorch_lora_weights.bin")]) == 2
    )
    err = capsys.readouterr().err
    assert "pickle" in err and len(err.strip().splitlines()) == 1
    gen = tiny()
    add_lora(gen.unet, rank=2, alpha=2.0)
    save_lora(gen.unet, tmp_path / "lora")
    assert checkpoint_kind(tmp_path / "lora") == "lora"
    assert checkpoint_kind(tmp_path / "lora" / "pytorch_lora_weights.safetensors") == "lora"


def test_generator_geometry_reads_configs_without_weights(tmp_path):
    from diffusers import AutoencoderKL

    gen = tiny(seed=5)
    gen.vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 8], latent_channels=1,
        norm_num_groups=4, sample_size=32,
    )  # fmt: skip
    gen.save_pretrained(tmp_path / "latent")
    tiny().save_pretrained(tmp_path / "pixel")
    tiny().save_embedded(tmp_path / "emb" / "g.safetensors")
    for path in (tmp_path / "latent", tmp_path / "pixel", tmp_path / "emb" / "g.safetensors"):
        back = Generator.from_pretrained(path)
        assert Generator.geometry(path) == (back.image_size, back.channels)
    assert Generator.geometry(tmp_path / "latent") == (32, 3)
    for f in tmp_path.rglob("*.safetensors"):  # no weights needed
        f.unlink()
    assert Generator.geometry(tmp_path / "latent") == (32, 3)
    assert Generator.geometry(tmp_path / "emb" / "g.safetensors") == (16, 1)


# ------------------------------------------------------------------------------------------------
# the commands, tiny
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny_generator.safetensors"
    Generator.build_tiny(image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32).save_embedded(path)
    return path


TINY_EXTRACT = [
    "--set", "num_train_images=4", "--set", "num_generations=10", "--set", "gen_batch_size=6",
    "--set", "sample_steps=2", "--set", "lora.steps=2", "--set", "full.steps=2", "--set", "workers=1",
    "--set", "extra_baseline_cfgs=[1.5]", "--set", "device=cpu",
]  # fmt: skip


def test_extract_command_embedded_default_and_resume(tmp_path, tiny_generator):
    out = tmp_path / "run"
    args = ["extract", "--out", str(out), "--base", str(tiny_generator), *TINY_EXTRACT]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("success_rate", "avg_similarity", "baseline_success_rate", "baseline_avg_similarity",
                "lora_success_rate", "full_baseline_avg_similarity", "baseline_cfg1.5_success_rate",
                "calibrated_success_rate", "baseline_calibrated_success_rate", "lora_calibrated_success_rate",
                "baseline_cfg1.5_calibrated_success_rate", "similarity_threshold", "calibrated_threshold",
                "lora_mia_loss_auc", "full_mia_pia_tpr_at_1pct_fpr", "mia_loss_auc", "mia_pia_auc"):  # fmt: skip
        assert key in m, key
    assert m["num_generations"] == 10 and m["num_train_images"] == 4
    assert m["success_rate"] == 0 and m["avg_similarity"] == pytest.approx(
        0.18336, abs=1e-5
    )  # seeded tiny run
    assert m["success_rate"] == pytest.approx((m["lora_success_rate"] + m["full_success_rate"]) / 2)
    assert m["calibrated_success_rate"] == pytest.approx(
        (m["lora_calibrated_success_rate"] + m["full_calibrated_success_rate"]) / 2
    )
    # the paper's rate counts at the fixed threshold, recorded with the config (pixels: 0.95)
    assert (
        m["similarity_threshold"] == 0.95
        and "similarity_threshold: 0.95" in (out / "config.yaml").read_text()
    )
    from safetensors.torch import load_file  # each training image's best similarity, per method

    lora_best = load_file(out / "lora" / "candidates.safetensors")["finextract_best"]
    assert m["lora_success_rate"] == pytest.approx(float((lora_best >= 0.95).float().mean()))
    assert m["lora_calibrated_success_rate"] == pytest.approx(
        float((lora_best >= m["calibrated_threshold"]).float().mean())
    )
    for f in ("matches.png", "lora/pytorch_lora_weights.safetensors", "full/embedded_generator.safetensors",
              "lora/candidates.safetensors", "full/finextract/batch_00001.safetensors"):  # fmt: skip
        assert (out / f).is_file(), f
    # a second start resumes: nothing is regenerated, the metrics are the same
    batch = out / "lora" / "finextract" / "batch_00000.safetensors"
    before = batch.stat().st_mtime_ns
    assert main(args) == 0
    assert batch.stat().st_mtime_ns == before
    assert json.loads((out / "metrics.json").read_text())["success_rate"] == m["success_rate"]


def test_audit_generator_on_a_tckr_run(tmp_path, tiny_generator, capsys):
    import yaml

    from modelmine.data import describe_members, load_digits

    tckr = tmp_path / "tckr"
    tckr.mkdir()
    (tckr / "config.yaml").write_text(yaml.safe_dump({"generator": str(tiny_generator), "data": None}))
    (tckr / "captions.json").write_text(json.dumps(["thin upright"] * len(load_digits("train", 8))))
    split = {"members": describe_members(load_digits("train", 8)),
             "nonmembers": describe_members(load_digits("heldout", 8))}  # fmt: skip
    gen = Generator.embedded(tiny_generator)
    add_lora(gen.unet, rank=2, alpha=2.0)
    _randomise_lora(gen.unet)
    save_lora(gen.unet, tckr / "lora_caption")
    out = tmp_path / "audit"
    args = ["audit", "generator", "--out", str(out), "--run", str(tckr), "--set", "num_generations=6",
            "--set", "sample_steps=2", "--set", "device=cpu"]  # fmt: skip
    assert main(args) == 2  # no split.json yet: not a finished TCKR run
    assert "no split.json" in capsys.readouterr().err
    (tckr / "split.json").write_text(json.dumps(split))
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_train_images"] == 1077 and m["num_generations"] == 6
    # leaked_images keeps its meaning: private images above the threshold calibrated on held-out ones
    assert m["leaked_images"] == round(m["calibrated_success_rate"] * 1077)
    assert m["similarity_threshold"] == 0.95 and "calibrated_threshold" in m and m["k"] == 0.0
    assert "baseline_success_rate" in m and "baseline_calibrated_success_rate" in m
    # membership inference on the LoRA: members against the held-out digits, both attacks
    assert m["mia_num_nonmembers"] == 360 and 0 <= m["mia_loss_auc"] <= 1 and 0 <= m["mia_pia_auc"] <= 1
    assert "mia_pia_tpr_at_1pct_fpr" in m and (out / "mia_scores.safetensors").is_file()
    assert (out / "leaks.png").is_file()
    assert main(["audit", "generator", "--out", str(tmp_path / "a2"), "--run", str(tmp_path)]) == 2


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_extract_command_on_a_given_pair(tmp_path, tiny_generator, tiny_folder, kind):
    root, data = tiny_folder  # 12 images 8x8: the "fine-tuning data" of the audited model
    if kind == "lora":
        gen = Generator.embedded(tiny_generator)
        add_lora(gen.unet, rank=2, alpha=2.0)
        _randomise_lora(gen.unet)
        finetuned = save_lora(gen.unet, tmp_path / "ft_lora")
    else:
        finetuned = tmp_path / "ft" / "tiny_generator.safetensors"
        Generator.build_tiny(image_size=8, seed=1, unet_overrides=SMALL_UNET, text_width=32).save_embedded(
            finetuned
        )
    out = tmp_path / "run"
    args = ["extract", "--out", str(out), "--base", str(tiny_generator), "--finetuned", str(finetuned),
            "--data", str(root), "--heldout-data", str(root), "--prompt", "a photo of digit three",
            "--set", "num_generations=13", "--set", "sample_steps=2", "--set", "workers=1",
            "--set", "device=cpu"]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_train_images"] == 12 and m["num_generations"] == 13
    assert m["calibrated_threshold"] == pytest.approx(1.0, abs=1e-5)  # non-members = the members here
    assert f"{kind}_success_rate" in m and (out / "matches.png").is_file()
    # membership inference on the pair: the same images as members and non-members score alike
    assert m[f"{kind}_mia_loss_auc"] == pytest.approx(0.5) and m["mia_pia_auc"] == pytest.approx(0.5)


def test_fine_tuning_steps_derive_from_the_number_of_images():
    from modelmine.methods.finextract import ModeConfig, resolve_steps

    assert resolve_steps(ModeConfig(), 10).steps == 400  # 400 draws per image at batch 10
    assert resolve_steps(ModeConfig(), 20).steps == 800
    assert resolve_steps(ModeConfig(steps_per_image=300), 4).steps == 300  # batch min(10, 4)
    assert resolve_steps(ModeConfig(steps=7), 20).steps == 7


def test_extract_dreambooth_identifier_on_a_builtin_dataset(tmp_path, tiny_generator):
    """The DreamBooth setting: "a photo of sks digit", "sks" a new token trained with the LoRA; the
    images from a built-in dataset by name; derived steps in config.yaml."""
    out = tmp_path / "run"
    args = ["extract", "--out", str(out), "--base", str(tiny_generator), "--data", "mnist5k",
            "--set", "identifier=sks", "--set", "modes=[lora]", "--set", "lora.steps_per_image=2",
            *TINY_EXTRACT]  # fmt: skip
    for fixed in ("lora.steps=2", "full.steps=2"):  # the derived steps instead
        i = args.index(fixed)
        del args[i - 1 : i + 1]
    assert main(args) == 0
    info = json.loads((out / "lora" / "train_info.json").read_text())
    assert info["new_words"] == ["sks"] and info["steps"] == 2  # 2 per image x 4 images / batch 4
    assert (out / "lora" / "learned_embeds.safetensors").is_file()
    assert "steps: 2" in (out / "config.yaml").read_text()
    assert main(["extract", "--out", str(tmp_path / "bad"), "--set", "identifier=two words"]) == 2


class _ChannelStats(torch.nn.Module):
    """A stand-in feature model: per-channel mean and spread of each quadrant, ``(B, C, H, W) -> (B, 8C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([q, (x - x.mean((2, 3), keepdim=True)).abs().mean((2, 3)).repeat(1, 4)], 1)


def test_torchscript_and_sscd_features(tmp_path, tiny_generator, tiny_folder, capsys):
    """``features=torchscript:<file>`` runs any TorchScript model on the images as they are and needs a
    threshold; ``sscd:<file>`` feeds SSCD's 224 px ImageNet-normalised RGB and keeps the paper's 0.7."""
    from modelmine.audit.extraction import build_features, sscd_preprocess

    path = tmp_path / "feat.pt"
    torch.jit.script(_ChannelStats()).save(str(path))
    images = torch.rand(3, 1, 8, 8)
    f = build_features(f"torchscript:{path}")(images)
    assert f.shape == (3, 8) and torch.allclose(f, _ChannelStats()(images))
    x = sscd_preprocess(images)
    assert x.shape == (3, 3, 224, 224) and torch.allclose(
        x[:, 0] * 0.229 + 0.485, x[:, 1] * 0.224 + 0.456, atol=1e-6
    )
    assert torch.allclose(build_features(f"sscd:{path}")(images), _ChannelStats()(x), atol=1e-6)
    assert fixed_threshold(f"sscd:{path}") == 0.7
    with pytest.raises(UserError, match="set similarity_threshold"):
        fixed_threshold(f"torchscript:{path}")
    with pytest.raises(UserError, match="feature model not found"):
        build_features(f"sscd:{tmp_path / 'none.pt'}")
    (tmp_path / "bad.pt").write_bytes(b"not a torchscript archive")
    with pytest.raises(UserError, match="cannot load TorchScript"):
        build_features(f"torchscript:{tmp_path / 'bad.pt'}")

    root, _ = tiny_folder
    gen = Generator.embedded(tiny_generator)
    add_lora(gen.unet, rank=2, alpha=2.0)
    _randomise_lora(gen.unet)
    args = ["extract", "--base", str(tiny_generator), "--finetuned", str(save_lora(gen.unet, tmp_path / "ft")),
            "--data", str(root), "--prompt", PROMPT, "--set", "num_generations=13", "--set", "sample_steps=2",
            "--set", "workers=1", "--set", "device=cpu"]  # fmt: skip
    assert (
        main([*args, "--out", str(tmp_path / "no_threshold"), "--set", f"features=torchscript:{path}"]) == 2
    )
    assert "set similarity_threshold" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main([*args, "--out", str(out), "--set", f"features=sscd:{path}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["similarity_threshold"] == 0.7 and 0 <= m["lora_success_rate"] <= 1


def test_diffusion_membership_attacks(tiny_generator):
    """The loss attack is the pretrained minus the fine-tuned denoising error: exactly 0 while the
    LoRA is still zero (B = 0), seeded, one score per image; PIA gives one finite score per image."""
    from modelmine.audit.diffusion_mia import loss_scores, pia_scores

    gen = Generator.embedded(tiny_generator)
    add_lora(gen.unet, rank=2, alpha=2.0)
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo of digit three"] * 5
    kw = dict(timesteps=[0.1, 0.5], num_noise=2, seed=3, batch_size=2)
    assert torch.equal(loss_scores(gen, images, prompts, **kw), torch.zeros(5))
    _randomise_lora(gen.unet)
    s = loss_scores(gen, images, prompts, **kw)
    assert s.shape == (5,) and s.abs().sum() > 0 and torch.equal(s, loss_scores(gen, images, prompts, **kw))
    p = pia_scores(gen, images, prompts, batch_size=2)
    assert p.shape == (5,) and torch.isfinite(p).all() and (p <= 0).all()
