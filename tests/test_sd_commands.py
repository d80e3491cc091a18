"""Every generator command end to end on the tiny SD-format folders (latent models, a VAE, CLIP's BPE
tokenizer, epsilon and v-prediction) and the tiny BLIP-2, each checked for what it writes; the
precision options; the colour captions and CLIP prompt-search candidates of the real path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from modelmine.audit.extraction import dino_features
from modelmine.audit.prompt import candidate_words
from modelmine.captioning import AttributeCaptioner, Blip2Captioner, captions_for
from modelmine.cli import main
from modelmine.data import save_image_folder
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.tiny_sd import colour_squares
from modelmine.errors import UserError

CPU = ["--set", "device=cpu"]
QUIET = [*CPU, "--set", "workers=1"]  # the commands that start worker processes


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour") / "shapes"
    save_image_folder(root, colour_squares())
    return root


def _pipeline(folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipeline_latents(pipe, prompt="red"):
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    return pipe(prompt, num_inference_steps=2, latents=latents, output_type="latent").images


@pytest.fixture(scope="module")
def tckr_run(tmp_path_factory, sd_folder, blip2_folder, colour_folder):
    out = tmp_path_factory.mktemp("tckr") / "run"
    args = ["tckr", "--out", str(out), "--data", str(colour_folder), "--generator", str(sd_folder("sd2-v")),
            "--set", f"captioner=blip2:{blip2_folder}", "--cardinality", "0.5", "--set", "lora.steps=2",
            "--set", "lora.batch_size=4", "--set", "sample_steps=2", "--set", "num_shadows=2",
            "--set", "teacher.epochs=1", "--set", "student.epochs=1", "--set", "gen_batch_size=8", *QUIET]  # fmt: skip
    assert main(args) == 0
    return out


def test_finetune_lora_on_the_v_model_loads_in_diffusers(tmp_path, sd_folder, colour_folder):
    folder = sd_folder("sd2-v")
    out = tmp_path / "ft"
    args = ["finetune", "--out", str(out), "--data", str(colour_folder), "--generator", str(folder),
            "--set", "lora.steps=3", "--set", "lora.batch_size=4", *CPU]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 3 and m["num_images"] == 24 and np.isfinite(m["final_loss"])
    assert Image.open(out / "samples.png").mode == "RGB"
    pipe = _pipeline(folder)
    before = _pipeline_latents(pipe)
    pipe.load_lora_weights(out / "lora")  # diffusers reads the adapter and it changes the model
    assert not torch.allclose(before, _pipeline_latents(pipe), atol=1e-6)


def test_finetune_full_on_sd1_saves_a_folder_the_pipeline_loads(tmp_path, sd_folder, colour_folder):
    folder = sd_folder("sd1", True)  # an old-style config asking DDIM to clip
    out = tmp_path / "ft"
    args = ["finetune", "--out", str(out), "--data", str(colour_folder), "--generator", str(folder),
            "--mode", "full", "--set", "full.steps=2", "--set", "full.batch_size=4", "--set", "prior_preservation=true",
            "--set", "prior_images_per_class=2", *CPU]  # fmt: skip
    assert main(args) == 0
    saved = out / "generator"
    src = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert json.loads((saved / "scheduler" / "scheduler_config.json").read_text()) == src
    assert not torch.allclose(_pipeline_latents(_pipeline(folder)), _pipeline_latents(_pipeline(saved)))


def test_tckr_with_blip2_captions_on_a_latent_model(tckr_run, colour_folder):
    out = tckr_run
    m = json.loads((out / "metrics.json").read_text())
    for key in ("teacher_acc", "student_acc", "teacher_auc", "student_auc", "num_synthetic"):
        assert key in m, key
    captions = json.loads((out / "captions.json").read_text())
    n_private = m["num_private"]
    assert len(captions) == n_private and all(isinstance(c, str) and c for c in captions)
    files = sorted((out / "synthetic").rglob("*.png"))  # only generated images, RGB at 16x16
    assert len(files) == m["num_synthetic"] == n_private // 2
    assert all(Image.open(f).size == (16, 16) and Image.open(f).mode == "RGB" for f in files)
    assert (out / "lora_caption" / "pytorch_lora_weights.safetensors").is_file()


def test_audit_generator_on_the_latent_tckr_run(tmp_path, tckr_run):
    out = tmp_path / "audit"
    args = ["audit", "generator", "--out", str(out), "--run", str(tckr_run), "--set", "num_generations=20",
            "--set", "sample_steps=2", "--set", "device=cpu"]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_train_images"] == 20 and m["num_generations"] == 20
    assert 0 <= m["success_rate"] <= 1 and "baseline_success_rate" in m and (out / "leaks.png").is_file()


@pytest.mark.parametrize("style, dag_input", [("sd2-base", "x_t"), ("sd2-v", "x0_hat")])
def test_ddis_on_latent_models_writes_tokens_diffusers_loads(
    tmp_path, sd_folder, colour_folder, style, dag_input
):
    """DAG (both forms) and CAT on epsilon and v-prediction: the guides work on the converted epsilon."""
    folder = sd_folder(style)
    out = tmp_path / "ddis"
    args = ["ddis", "--out", str(out), "--data", str(colour_folder), "--generator", str(folder),
            "--set", "teacher.epochs=1", "--set", "num_images=12", "--set", "batch_size=6",
            "--set", "sample_steps=2", "--set", "cat_iters=2", "--set", "cat_steps=2", "--set", "cat_per_class=1",
            "--set", "student.epochs=1", "--set", f"dag_input={dag_input}", *QUIET]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    for p in ("", "plain_", "dag_only_", "cat_only_"):
        assert f"{p}student_acc" in m and f"{p}fid" in m
    files = sorted((out / "synthetic").rglob("*.png"))
    assert len(files) == 12 and all(Image.open(f).mode == "RGB" for f in files)
    pipe = _pipeline(folder)
    learned = load_file(out / "cat" / "learned_embeds.safetensors")
    assert sorted(learned) == ["<cat-0>", "<cat-1>", "<cat-2>"]
    pipe.load_textual_inversion([{w: v} for w, v in learned.items()])  # diffusers' own loader
    ids = pipe.tokenizer.convert_tokens_to_ids("<cat-1>")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids], learned["<cat-1>"])


@pytest.mark.parametrize("prompt", ["a photo of a red square", "auto"])
def test_extract_on_the_v_model(tmp_path, sd_folder, colour_folder, prompt):
    out = tmp_path / "extract"
    args = ["extract", "--out", str(out), "--base", str(sd_folder("sd2-v")), "--data", str(colour_folder),
            "--heldout-data", str(colour_folder), "--prompt", prompt, "--set", "num_generations=26",
            "--set", "sample_steps=2", "--set", "modes=[lora]", "--set", "lora.steps=2",
            "--set", "prompt_search.max_candidates=40", "--set", "prompt_search.max_words=2",
            "--set", "prompt_search.num_noise=2", "--set", "prompt_search.sample_steps=2", *QUIET]  # fmt: skip
    if prompt == "auto":  # fine-tuned here with the true prompt, then recovered from the pair
        args += ["--set", "true_prompt=a photo of a red square"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_train_images"] == 24 and m["num_generations"] == 26
    assert 0 <= m["lora_success_rate"] <= 1 and "lora_baseline_avg_similarity" in m
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file() and (out / "matches.png").is_file()
    if prompt == "auto":
        recovered = json.loads((out / "prompt.json").read_text())["recovered"]["lora"]
        words = candidate_words(Generator.load_tokenizer(sd_folder("sd2-v")), 40)
        assert recovered and all(w in words for w in recovered.split())
        assert "recovered_success_rate" in m


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_keeps_trained_weights_in_float32(tmp_path, sd_folder, colour_folder, dtype):
    out = tmp_path / "ft"
    args = ["finetune", "--out", str(out), "--data", str(colour_folder), "--generator", str(sd_folder("sd2-v")),
            "--set", "lora.steps=2", "--set", "lora.batch_size=4", "--set", f"dtype={dtype}",
            "--set", "gradient_checkpointing=true", "--set", "vae_slicing=true", *CPU]  # fmt: skip
    assert main(args) == 0
    assert np.isfinite(json.loads((out / "metrics.json").read_text())["final_loss"])
    weights = load_file(out / "lora" / "pytorch_lora_weights.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}
    assert f"dtype: {dtype}" in (out / "config.yaml").read_text()


def test_a_bad_dtype_is_one_line(tmp_path, sd_folder, capsys):
    args = [
        "finetune",
        "--out",
        str(tmp_path / "x"),
        "--generator",
        str(sd_folder("sd1")),
        "--set",
        "dtype=half",
    ]
    assert main(args) == 2
    assert "dtype is one of float32, float16, bfloat16" in capsys.readouterr().err


def test_blip2_runs_on_the_given_device_and_dtype(blip2_folder):
    cap = Blip2Captioner(str(blip2_folder), device="cpu", dtype=torch.bfloat16, max_new_tokens=3)
    assert cap.model.dtype == torch.bfloat16 and cap.device == torch.device("cpu")
    data = colour_squares(4)
    out = captions_for(data, f"blip2:{blip2_folder}", device="cpu", dtype=torch.float32)
    assert len(out) == 4 and all(isinstance(c, str) for c in out)


def test_hub_ids_not_in_the_cache_fail_at_once(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    t = time.time()
    with pytest.raises(UserError, match="nothing is downloaded"):
        Blip2Captioner("Salesforce/blip2-opt-2.7b")
    with pytest.raises(UserError, match="nothing is downloaded"):
        dino_features("facebook/dinov2-small")
    with pytest.raises(UserError, match="nothing is downloaded"):
        Generator.from_pretrained("stabilityai/stable-diffusion-2-1-base")
    assert time.time() - t < 10  # no network retries


def test_colour_images_get_colour_words_strokes_or_not():
    data = colour_squares(3)  # squares on a dark background: the stroke test takes them as strokes
    captions = AttributeCaptioner()(data.images)
    assert [c.split()[-2:] for c in captions] == [["bold", "red"], ["bold", "green"], ["bold", "blue"]]
    grey = data.images.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert not any(w in c.split() for c in AttributeCaptioner()(grey) for w in ("red", "green", "blue"))


def test_clip_candidates_are_lower_case_words_that_round_trip(sd_folder):
    tok = Generator.load_tokenizer(sd_folder("sd1"))
    words = candidate_words(tok)
    assert len(words) == 1000 and len(set(words)) == 1000
    for w in words:
        assert w.isascii() and w.isalpha() and w.islower(), w
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w


def test_gpu_smoke_skips_in_one_line_without_a_stable_diffusion_folder(tmp_path):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_smoke.py"
    env = {k: v for k, v in os.environ.items() if k != "MODELMINE_SD"}
    out = tmp_path / "gpu_smoke.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip().startswith("gpu_smoke: skipped:")
    assert not out.exists()
