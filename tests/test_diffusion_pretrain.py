"""`modelmine pretrain` smoke test: tiny budget, writes weights + metrics, resumes without retraining."""

import json

import pytest
import torch

from modelmine.cli import main
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.pretrain import make_prompts


def test_prompts_use_known_words():
    import random

    gen = Generator.build_tiny()
    labels = torch.arange(10)
    prompts = make_prompts(labels, ["thick leaning right small centered"] * 10, random.Random(0))
    ids = gen.tokenize(prompts)
    assert (ids != gen.tokenizer.unk_token_id).all()
    assert ids.shape[1] == 16 and (ids == gen.tokenizer.pad_token_id).any(1).all()  # all fit


def test_pretrain_command_smoke_and_resume(tmp_path):
    out = tmp_path / "pt"
    args = ["pretrain", "--out", str(out)] + [
        f"--set={kv}"
        for kv in ("steps=2", "batch_size=4", "eval_every=0", "cas_per_class=1", "sample_steps=2",
                   "public_classifier_train=20", "public_classifier_epochs=1", "teacher.epochs=1")
    ]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (
        m["cas_public"] == pytest.approx(0.1) and m["cas_private"] == pytest.approx(0.1) and m["steps"] == 2
    )
    assert (out / "samples.png").exists()
    gen = Generator.embedded(out / "embedded_generator.safetensors")
    assert gen.defaults["steps"] == 2
    before = (out / "checkpoint.pt").stat().st_mtime
    assert main(args) == 0  # resumes: nothing retrained
    assert (out / "checkpoint.pt").stat().st_mtime == before
    assert json.loads((out / "metrics.json").read_text())["cas_public"] == m["cas_public"]
    # another CFG scale in the finished folder: the stored default and CAS move, nothing is retrained
    assert main(args + ["--set=guidance_scale=2"]) == 0
    assert (out / "checkpoint.pt").stat().st_mtime == before
    assert json.loads((out / "metrics.json").read_text())["cas_cfg"] == 2
    assert Generator.embedded(out / "embedded_generator.safetensors").defaults["cfg"] == 2


def test_public_batch_mixes_glyphs_letters_and_procedural_images_in_known_words():
    import random

    from modelmine.captioning import AttributeCaptioner
    from modelmine.diffusion.pretrain import public_batch

    gen = Generator.build_tiny()
    images, prompts = public_batch(64, 7, (0.5, 0.25, 0.25), AttributeCaptioner(), random.Random(0))
    assert images.shape == (64, 1, 16, 16) and len(prompts) == 64
    assert any("letter" in p or "symbol" in p for p in prompts[32:48])
    ids = gen.tokenize(prompts)
    assert (ids != gen.tokenizer.unk_token_id).all(), [
        p for p, r in zip(prompts, ids, strict=True) if (r == 1).any()
    ]
    assert (ids == gen.tokenizer.pad_token_id).any(1).all()  # every prompt fits the context
    again, prompts2 = public_batch(64, 7, (0.5, 0.25, 0.25), AttributeCaptioner(), random.Random(0))
    assert torch.equal(images, again) and prompts == prompts2


def test_pretrain_reproduces_its_weights_and_rejects_a_bad_mix(tmp_path):
    from modelmine.runs import load_tensors

    args = [f"--set={kv}" for kv in ("steps=2", "batch_size=4", "eval_every=0", "cas_per_class=1",
                                     "sample_steps=2", "public_classifier_train=20",
                                     "public_classifier_epochs=1", "teacher.epochs=1")]  # fmt: skip
    for name in ("a", "b"):
        assert main(["pretrain", "--out", str(tmp_path / name), *args]) == 0
    wa = load_tensors(tmp_path / "a" / "embedded_generator.safetensors")
    wb = load_tensors(tmp_path / "b" / "embedded_generator.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert main(["pretrain", "--out", str(tmp_path / "c"), *args, "--set=mix=[0.2,0.5,0.5]"]) == 2


def test_colour_batch_keeps_each_grey_image_and_names_its_colours():
    import random

    from modelmine.captioning import HUE_WORDS, AttributeCaptioner
    from modelmine.diffusion.pretrain import public_batch

    grey, _ = public_batch(64, 7, (0.5, 0.25, 0.25), AttributeCaptioner(), random.Random(0))
    colour, prompts = public_batch(64, 7, (0.5, 0.25, 0.25), AttributeCaptioner(), random.Random(0), 3)
    assert colour.shape == (64, 3, 16, 16) and 0 <= colour.min() and colour.max() <= 1
    # a monotone colour ramp keeps each image's luminance order: brighter grey -> brighter colour,
    # unless the ramp was flipped; either way the luminance follows the grey image closely
    lum = colour.mean(1).flatten(1)
    r = torch.stack(
        [torch.corrcoef(torch.stack([g, c]))[0, 1] for g, c in zip(grey.flatten(1), lum, strict=True)]
    )
    flat = grey.flatten(1).std(1) < 1e-3
    assert (r[~flat].abs() > 0.5).float().mean() > 0.9
    chroma = (colour.amax(1) - colour.amin(1)).mean((1, 2))
    assert 0.1 < (chroma < 1e-6).float().mean() < 0.45  # about a quarter stays grey
    assert sum(any(w in p for w in HUE_WORDS) for p in prompts) >= 5  # captions name the colours
    gen = Generator.build_tiny(channels=3)
    assert (gen.tokenize(prompts) != gen.tokenizer.unk_token_id).all()


def test_colourise_gives_each_ramp_one_dominant_hue():
    from matplotlib.colors import rgb_to_hsv

    from modelmine.procedural import colourise

    # grey 0, 0.5 and 1 land exactly on a ramp's three stops
    stops = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(500, 1, 1, 3)
    hsv = torch.from_numpy(
        rgb_to_hsv(colourise(stops, seed=3, grey_share=0)[:, :, 0].permute(0, 2, 1).numpy())
    )
    hue, vivid = hsv[..., 0], (hsv[..., 1] > 0.05) & (hsv[..., 2] > 0.05)  # (500, 3 stops)
    gap = (hue[:, :, None] - hue[:, None, :]).abs()
    gap = torch.minimum(gap, 1 - gap)  # circular distance between two stops' hues
    both = vivid[:, :, None] & vivid[:, None, :]
    assert both.any() and gap[both].max() <= 1 / 6 + 1e-4  # within one hue word's width
    assert hue[:, 1][vivid[:, 1]].histc(6, 0, 1).min() > 40  # every hue is used


def test_widened_grey_model_makes_the_grey_prediction_on_every_channel():
    from modelmine.diffusion.pretrain import widen_channels

    grey = Generator.build_tiny(seed=3, unet_overrides={"block_out_channels": [8, 16, 16]})
    rgb = Generator.build_tiny(channels=3, seed=4, unet_overrides={"block_out_channels": [8, 16, 16]})
    rgb.unet.load_state_dict(widen_channels(grey.unet.state_dict(), 3))
    x = torch.randn(2, 1, 16, 16)
    states = grey.encode_prompt(["a photo of digit one", "a circle"])
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = grey.unet(x, t, states).sample
        b = rgb.unet(x.expand(-1, 3, -1, -1), t, states).sample
    assert b.shape == (2, 3, 16, 16) and torch.allclose(b, a.expand(-1, 3, -1, -1), atol=1e-5)
    with pytest.raises(Exception, match="cannot be widened"):
        widen_channels(rgb.unet.state_dict(), 4)


def test_colour_pretrain_warm_starts_from_the_grey_model_and_names_its_files(tmp_path):
    out = tmp_path / "rgb"
    args = ["pretrain", "--out", str(out)] + [
        f"--set={kv}"
        for kv in ("channels=3", "steps=1", "batch_size=4", "eval_every=0", "cas_per_class=1", "sample_steps=2",
                   "public_classifier_train=20", "public_classifier_epochs=1")
    ]  # fmt: skip
    v = ["--set=prediction_type=v_prediction", "--set=timestep_spacing=trailing"]
    assert main(args + ["--set=init_from=embedded", *v]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "cas_public" in m and "cas_private" not in m  # the digits teacher reads grey
    gen = Generator.embedded(out / "embedded_generator_rgb.safetensors")
    assert gen.channels == 3 and (out / "embedded_tokenizer_rgb.json").is_file()
    sched = gen.scheduler.config  # what the model was trained for travels with its weights
    assert (sched.prediction_type, sched.timestep_spacing) == ("v_prediction", "trailing")
    assert main(["pretrain", "--out", str(tmp_path / "bad"), "--set=channels=2"]) == 2
    assert main(["pretrain", "--out", str(tmp_path / "bad"), "--set=prediction_type=sample"]) == 2
