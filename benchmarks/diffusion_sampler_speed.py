"""Speed of our DDIM loop on the embedded generator: images/s and overhead over bare UNet calls.

    python benchmarks/diffusion_sampler_speed.py [--batch 64] [--steps 30] [--cfg 1.5] [--threads 1]

The overhead ratio is (time of ``sample(...)``) / (time of the same number of bare
``unet(x, t, text)`` calls on the same batch shapes: 2B rows per call with CFG), so it counts
text encoding, the DDIM arithmetic, seeded noise, decoding and Python. Target (issue 3): < 1.15.
Writes benchmarks/results/diffusion_sampler_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from _results import write_results
from modelmine.diffusion.generator import EMBEDDED_WEIGHTS, Generator
from modelmine.diffusion.pretrain import class_prompts
from modelmine.diffusion.sampler import ddim_timesteps, sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=None, help="default: the generator's stored cfg")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default=None, help="embedded generator file (default: the shipped one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "diffusion_sampler_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = (
        Generator.embedded(args.weights)
        if args.weights or EMBEDDED_WEIGHTS.exists()
        else Generator.build_tiny()
    )
    if args.cfg is None:
        args.cfg = float(gen.defaults.get("cfg", 3.0))
    prompts, _ = class_prompts(args.batch // 10 + 1)
    prompts = prompts[: args.batch]
    timesteps, _ = ddim_timesteps(gen, args.steps)
    rows = 2 * args.batch if args.cfg != 1 else args.batch

    def run_sampler() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            sample(gen, prompts, steps=args.steps, cfg=args.cfg, seed=0)
        return time.perf_counter() - t0

    def run_bare() -> float:
        x = torch.randn(rows, *gen.latent_shape)
        with torch.inference_mode():
            text = gen.encode_prompt(["a photo of digit three"] * rows)
            t0 = time.perf_counter()
            for t in timesteps:
                gen.unet(x, torch.full((rows,), t), text)
        return time.perf_counter() - t0

    run_sampler(), run_bare()  # warm-up
    ours, bare = [], []
    for _ in range(args.repeats):  # interleaved, so a busy neighbour affects both alike
        ours.append(run_sampler())
        bare.append(run_bare())
    t_ours, t_bare = statistics.median(ours), statistics.median(bare)
    result = {
        "generator": args.weights or ("embedded" if EMBEDDED_WEIGHTS.exists() else "untrained tiny"),
        "batch": args.batch,
        "steps": args.steps,
        "cfg": args.cfg,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "images_per_second": args.batch / t_ours,
        "seconds_per_batch": t_ours,
        "bare_unet_seconds": t_bare,
        "overhead_ratio": t_ours / t_bare,
        "runs_seconds": ours,
        "bare_runs_seconds": bare,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("runs_seconds")}))


if __name__ == "__main__":
    main()
