"""The real Stable Diffusion path on tiny SD-format folders: parity with diffusers and command run times.

    python benchmarks/sd_format.py [--work DIR] [--threads 1] [--out benchmarks/results/sd_format.json]

For each fixture style (``sd1``, ``sd2-base``: PNDM + epsilon; ``sd2-v``: DDIM + v_prediction; see
:mod:`modelmine.diffusion.tiny_sd`) and each ``clip_sample`` entry of its scheduler config (none,
true, false):

- ``parity``: the largest absolute difference between our latents and ``StableDiffusionPipeline``'s
  (built with a ``DDIMScheduler`` loaded from the folder), same noise, 10 steps, CFG 3; and, for
  scale, between the pipeline and the same DDIM with ``clip_sample=True`` (the latent clamp).
- ``v_loss``: on the v fixture, the v-prediction and epsilon losses of a LoRA's four training
  images before and after 60 steps of LoRA fine-tuning (fixed timesteps and noise).
- ``commands``: the wall time and exit status of every generator command on the fixtures (one
  process each, tiny settings, the tiny BLIP-2 as TCKR's captioner), with a few of its metrics.

Resumable: entries already in the JSON are kept (delete the file to measure again). The JSON is
written after every entry.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from modelmine.data import save_image_folder
from modelmine.diffusion.finetune import add_lora, train_unet
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.sampler import sample
from modelmine.diffusion.tiny_sd import STYLES, build_tiny_blip2, build_tiny_sd, colour_squares

PROMPTS = ["a photo of a red circle", "a drawing of the digit seven"]
ENTRIES = {"none": None, "true": True, "false": False}
TINY = ["--set", "device=cpu"]


def pipeline_latents(folder: Path, noise: torch.Tensor, clip_sample: bool | None = None) -> torch.Tensor:
    """``StableDiffusionPipeline``'s latents ``(B, 4, h, w)`` from ``noise`` with DDIM from the folder's
    config (``clip_sample`` overrides the entry the pipeline sets)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sched = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, scheduler=sched, safety_checker=None, requires_safety_checker=False
    )
    if clip_sample is not None:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=clip_sample)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=10, guidance_scale=3.0, latents=noise.clone(), output_type="latent")
    return pipe(PROMPTS, **kw).images


def parity(folder: Path) -> dict:
    gen = Generator.from_pretrained(folder)
    noise = torch.randn((2, *gen.latent_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = sample(gen, PROMPTS, steps=10, cfg=3.0, latents=noise.clone(), output="latents")
        ref = pipeline_latents(folder, noise)
        clamped = pipeline_latents(folder, noise, clip_sample=True)
    return {
        "max_abs_diff": float((ours - ref).abs().max()),
        "clamp_max_abs_diff": float((clamped - ref).abs().max()),
        "latent_abs_max": float(ref.abs().max()),
    }


def losses(gen: Generator, images: torch.Tensor, prompts: list[str]) -> dict:
    """Mean v and epsilon losses over fixed timesteps and noise (what the LoRA should lower)."""
    g = torch.Generator().manual_seed(123)
    v_loss = eps_loss = 0.0
    ts = (100, 300, 500, 700, 900)
    with torch.no_grad():
        x0, states = gen.encode_images(images), gen.encode_prompt(prompts)
        for t in ts:
            noise = torch.randn(x0.shape, generator=g)
            a = gen.scheduler.alphas_cumprod[t]
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            out = gen.unet(x_t, torch.full((len(x0),), t), states).sample  # v
            eps = a.sqrt() * out + (1 - a).sqrt() * x_t
            v_loss += torch.nn.functional.mse_loss(out, a.sqrt() * noise - (1 - a).sqrt() * x0).item()
            eps_loss += torch.nn.functional.mse_loss(eps, noise).item()
    return {"v_loss": v_loss / len(ts), "eps_loss": eps_loss / len(ts)}


def v_loss(folder: Path) -> dict:
    gen = Generator.from_pretrained(folder)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)).round()
    prompts = ["a photo of a cat", "a photo of a dog", "a red circle", "a blue square"]
    before = losses(gen, images, prompts)
    params = add_lora(gen.unet, rank=4, alpha=4.0, seed=0)
    train_unet(gen, params, images, prompts, steps=60, batch_size=4, lr=3e-3, seed=0)
    after = losses(gen, images, prompts)
    return {f"{k}_before": v for k, v in before.items()} | {f"{k}_after": v for k, v in after.items()}


def colour_folder(root: Path) -> Path:
    """24 RGB 16x16 images (:func:`~modelmine.diffusion.tiny_sd.colour_squares`) as an ImageFolder."""
    save_image_folder(root, colour_squares())
    return root


def command_lines(work: Path, sd: dict[str, Path], blip2: Path, data: Path) -> dict[str, list[str]]:
    """Every generator command on the fixtures, tiny settings (the order matters: audit reads tckr)."""
    quiet = [*TINY, "--set", "workers=1"]
    v = str(sd["sd2-v"])
    return {
        "finetune_lora_sd2-v": ["finetune", "--data", str(data), "--generator", v, "--set", "lora.steps=20", *TINY],
        "finetune_full_sd1": ["finetune", "--data", str(data), "--generator", str(sd["sd1"]), "--mode", "full",
                              "--set", "full.steps=20", *TINY],
        "tckr_sd2-v_blip2": ["tckr", "--data", str(data), "--generator", v, "--set", f"captioner=blip2:{blip2}",
                             "--cardinality", "1", "--set", "lora.steps=20", "--set", "sample_steps=10",
                             "--set", "num_shadows=4", "--set", "teacher.epochs=2", "--set", "student.epochs=2",
                             *quiet],
        "audit_generator_sd2-v": ["audit", "generator", "--run", str(work / "runs" / "tckr_sd2-v_blip2"),
                                  "--set", "num_generations=40", "--set", "sample_steps=10", *TINY],
        "ddis_sd2-base": ["ddis", "--data", str(data), "--generator", str(sd["sd2-base"]), "--set", "num_images=24",
                          "--set", "sample_steps=10", "--set", "cat_iters=4", "--set", "cat_steps=4",
                          "--set", "teacher.epochs=2", "--set", "student.epochs=2", *quiet],
        "extract_prompt_sd2-v": ["extract", "--base", v, "--data", str(data), "--heldout-data", str(data),
                                 "--prompt", "a photo of a red square", "--set", "num_generations=40",
                                 "--set", "sample_steps=10", "--set", "modes=[lora]", "--set", "lora.steps=20",
                                 *quiet],
        "extract_auto_sd2-v": ["extract", "--base", v, "--data", str(data), "--heldout-data", str(data),
                               "--prompt", "auto", "--set", "true_prompt=a photo of a red square",
                               "--set", "num_generations=40", "--set", "sample_steps=10", "--set", "modes=[lora]",
                               "--set", "lora.steps=20", "--set", "prompt_search.max_candidates=200", *quiet],
    }  # fmt: skip


KEPT = ("final_loss", "student_acc", "teacher_acc", "teacher_auc", "student_auc", "success_rate", "fid",
        "avg_similarity", "recovered_success_rate", "num_synthetic")  # fmt: skip


def run_command(name: str, args: list[str], work: Path) -> dict:
    """Run one command line in its own process (``work/runs/<name>``); its time, status and metrics."""
    out = work / "runs" / name
    words = 2 if args[0] == "audit" else 1
    cmd = [sys.executable, "-m", "modelmine", *args[:words], "--out", str(out), *args[words:]]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    entry = {"seconds": time.time() - t, "exit": proc.returncode}
    if proc.returncode != 0:
        entry["stderr"] = proc.stderr.strip().splitlines()[-1:]
    metrics = out / "metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        entry["metrics"] = {k: m[k] for k in KEPT if k in m}
    if (out / "prompt.json").exists():
        entry["recovered_prompt"] = json.loads((out / "prompt.json").read_text())["recovered"]
    return entry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="fixture and run folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sd_format.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    res.setdefault("parity", {})
    res.setdefault("commands", {})
    res["machine"] = machine_info() | {"threads": args.threads}
    work = Path(args.work or tempfile.mkdtemp(prefix="sd_format_"))
    sd = {s: work / "sd" / s for s in STYLES}
    for style in STYLES:
        if not (sd[style] / "model_index.json").exists():
            build_tiny_sd(sd[style], style)
        for entry, value in ENTRIES.items():
            key = f"{style}/{entry}"
            if key in res["parity"]:
                continue
            folder = work / "sd" / f"{style}-{entry}"
            if not folder.exists():
                build_tiny_sd(folder, style, clip_sample=value)
            res["parity"][key] = parity(folder)
            write_results(out, res)
    if "v_loss" not in res:
        res["v_loss"] = v_loss(sd["sd2-v"])
        write_results(out, res)
    blip2 = work / "blip2"
    if not (blip2 / "config.json").exists():
        build_tiny_blip2(blip2)
    data = work / "colour"
    if not data.exists():
        colour_folder(data)
    for name, line in command_lines(work, sd, blip2, data).items():
        if name in res["commands"] and res["commands"][name]["exit"] == 0:
            continue
        res["commands"][name] = run_command(name, line, work)
        print(name, res["commands"][name], flush=True)
        write_results(out, res)


if __name__ == "__main__":
    main()
