"""`modelmine pretrain` smoke test: tiny budget, writes weights + metrics, resumes without retraining."""

import json

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
    assert 0 <= m["cas_public"] <= 1 and 0 <= m["cas_private"] <= 1 and m["steps"] == 2
    assert (out / "samples.png").exists()
    gen = Generator.embedded(out / "embedded_generator.safetensors")
    assert gen.defaults["steps"] == 2
    before = (out / "checkpoint.pt").stat().st_mtime
    assert main(args) == 0  # resumes: nothing retrained
    assert (out / "checkpoint.pt").stat().st_mtime == before
    assert json.loads((out / "metrics.json").read_text())["cas_public"] == m["cas_public"]
