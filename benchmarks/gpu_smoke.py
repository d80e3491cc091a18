"""One short run of every generator command on a real Stable Diffusion folder, for a GPU machine.

    python benchmarks/gpu_smoke.py --sd PATH/TO/stable-diffusion-2-1-base [--blip2 PATH] [--data FOLDER]
        [--dtype float16] [--out benchmarks/results/gpu_smoke.json]

``--sd`` (or ``$MODELMINE_SD``) is a local diffusers ``StableDiffusionPipeline`` folder (SD 1.4/1.5,
2-base, 2.1); without one, or without CUDA, the script prints one line and exits 0. ``--data`` is
an ImageFolder (default: 24 coloured squares on a dark background, written at the model's
resolution); ``--blip2`` a local BLIP-2 folder for TCKR's captions (default: the attribute captioner).

Each command runs in this process through ``modelmine.cli.main`` with small budgets (a few
fine-tuning steps, 20 DDIM steps, a few dozen images), so the figures are the cost of one short
run at the model's resolution, not of the papers' budgets: wall seconds and the peak CUDA memory
(``torch.cuda.max_memory_allocated``) per command. Resumable: commands already in the JSON with exit
0 are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from modelmine.cli import main as cli
from modelmine.data import save_image_folder
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.tiny_sd import colour_squares


def squares(root: Path, size: int) -> Path:
    """24 RGB images at ``size`` (:func:`~modelmine.diffusion.tiny_sd.colour_squares`) as an ImageFolder."""
    save_image_folder(root, colour_squares(24, size))
    return root


def commands(sd: str, data: str, blip2: str | None, work: Path, dtype: str) -> dict[str, list[str]]:
    common = ["--set", f"dtype={dtype}", "--set", "workers=1"]
    captioner = f"blip2:{blip2}" if blip2 else "attributes"
    extract = ["extract", "--base", sd, "--data", data, "--heldout-data", data, "--set", "num_generations=32",
               "--set", "sample_steps=20", "--set", "modes=[lora]", "--set", "lora.steps=50",
               "--set", "gen_batch_size=8", *common]  # fmt: skip
    return {
        "finetune": ["finetune", "--data", data, "--generator", sd, "--set", "lora.steps=50", "--set", "lora.batch_size=4",
                     "--set", f"dtype={dtype}", "--set", "gradient_checkpointing=true"],
        "tckr": ["tckr", "--data", data, "--generator", sd, "--set", f"captioner={captioner}", "--cardinality", "1",
                 "--set", "lora.steps=50", "--set", "lora.batch_size=4", "--set", "sample_steps=20",
                 "--set", "gen_batch_size=8", "--set", "num_shadows=4", *common],
        "audit_generator": ["audit", "generator", "--run", str(work / "tckr"), "--set", "num_generations=32",
                            "--set", "sample_steps=20", "--set", "gen_batch_size=8", "--set", f"dtype={dtype}"],
        "ddis": ["ddis", "--data", data, "--generator", sd, "--set", "num_images=24", "--set", "batch_size=4",
                 "--set", "sample_steps=20", "--set", "cat_iters=4", "--set", "cat_steps=10",
                 "--set", "gradient_checkpointing=true", "--set", "vae_slicing=true", *common],
        "extract": [*extract, "--prompt", "a photo of a red square"],
        "extract_auto": [*extract, "--prompt", "auto", "--set", "true_prompt=a photo of a red square"],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sd", default=os.environ.get("MODELMINE_SD"))
    ap.add_argument("--blip2", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_smoke.json"))
    args = ap.parse_args()
    if not args.sd or not Path(args.sd, "model_index.json").exists():
        print("gpu_smoke: skipped: no Stable Diffusion folder (--sd PATH or $MODELMINE_SD)")
        return
    if not torch.cuda.is_available():
        print("gpu_smoke: skipped: no CUDA device")
        return
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {"commands": {}}
    res["machine"] = machine_info() | {"gpu": torch.cuda.get_device_name(0), "dtype": args.dtype}
    res["generator"] = args.sd
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_smoke_"))
    size, _ = Generator.geometry(args.sd)
    res["image_size"] = size
    data = args.data or str(squares(work / "data", size))
    for name, line in commands(args.sd, data, args.blip2, work, args.dtype).items():
        if res["commands"].get(name, {}).get("exit") == 0:
            continue
        words = 2 if line[0] == "audit" else 1
        torch.cuda.reset_peak_memory_stats()
        t = time.time()
        status = cli([*line[:words], "--out", str(work / name), *line[words:]])
        entry = {
            "exit": status,
            "seconds": time.time() - t,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
        res["commands"][name] = entry
        print(name, entry, flush=True)
        write_results(out, res)


if __name__ == "__main__":
    main()
