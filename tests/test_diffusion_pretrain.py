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
