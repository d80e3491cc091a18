"""Golden metrics: every command once, tiny and seeded, through ``cli.main``; each run's ``metrics.json``.

A refactor that claims "behaviour unchanged" records these before and compares after::

    python benchmarks/golden.py              # writes results/golden.json
    python benchmarks/golden.py --check      # reruns and lists every metric that moved

Runs are the tests' tiny settings (8x8 images, a random tiny generator, one epoch), so the numbers
mean nothing about quality; they only pin what the code computes. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from _results import write_results
from modelmine.cli import main
from modelmine.diffusion.generator import Generator

RESULTS = Path(__file__).parent / "results" / "golden.json"
SMALL_UNET = dict(block_out_channels=[8, 16, 16], norm_num_groups=4)
CPU = ["--set", "device=cpu"]
TEACHER = ["--set", "teacher.epochs=1", "--set", "teacher.image_size=8"]
DATA_FREE = [
    "--set", "num_batches=2", "--set", "batch_size=20", "--set", "num_steps=3",
    "--set", "student.epochs=1", "--set", "student.preset=mlp",
]  # fmt: skip


def commands(gen: Path, tmp: Path) -> dict[str, list[str]]:
    """command name -> argv without ``--out``; ``audit generator`` reads the tckr run."""
    g = ["--generator", str(gen)]
    return {
        "teacher": ["teacher", *TEACHER, *CPU],
        "cake": ["cake", *DATA_FREE, *TEACHER, *CPU],
        "deepinversion": ["deepinversion", *DATA_FREE, *TEACHER, "--set", "teacher.preset=cnn_small", *CPU],
        "tckr": ["tckr", "--cardinality", "0.05", "0.1", *g, *TEACHER, "--set", "lora.steps=2",
                 "--set", "sample_steps=2", "--set", "student.epochs=1", "--set", "num_shadows=2",
                 "--set", "workers=1", *CPU],
        "ddis": ["ddis", *g, *TEACHER, "--set", "num_images=20", "--set", "batch_size=10",
                 "--set", "sample_steps=2", "--set", "cat_iters=2", "--set", "cat_steps=2",
                 "--set", "cat_per_class=1", "--set", "student.epochs=1", "--set", "workers=1", *CPU],
        "audit lira": ["audit", "lira", "--shadows", "2", *TEACHER, "--set", "teacher.preset=cnn_small", *CPU],
        "audit membership": ["audit", "membership", "--shadows", "2", *TEACHER,
                             "--set", "teacher.preset=cnn_small", *CPU],
        "extract": ["extract", "--base", str(gen), "--set", "num_train_images=4", "--set", "num_generations=10",
                    "--set", "gen_batch_size=6", "--set", "sample_steps=2", "--set", "lora.steps=2",
                    "--set", "full.steps=2", "--set", "workers=1", "--set", "extra_baseline_cfgs=[1.5]", *CPU],
        "audit generator": ["audit", "generator", "--run", str(tmp / "tckr"), "--set", "num_generations=6",
                            "--set", "sample_steps=2", *CPU],
        "finetune": ["finetune", *g, "--set", "lora.steps=2", "--set", "lora.batch_size=4", *CPU],
        "pretrain": ["pretrain", *[f"--set={kv}" for kv in (
            "steps=2", "batch_size=4", "eval_every=0", "cas_per_class=1", "sample_steps=2",
            "public_classifier_train=20", "public_classifier_epochs=1", "teacher.epochs=1")], *CPU],
    }  # fmt: skip


def run_all() -> dict[str, dict]:
    torch.manual_seed(0)
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        gen = tmp / "gen.safetensors"
        Generator.build_tiny(image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32).save_embedded(
            gen
        )
        for name, argv in commands(gen, tmp).items():
            n = 2 if argv[0] == "audit" else 1
            run = tmp / name.replace(" ", "_")
            if name == "tckr":
                run = tmp / "tckr"
            rc = main([*argv[:n], "--out", str(run), *argv[n:]])
            out[name] = json.loads((run / "metrics.json").read_text()) if rc == 0 else {"exit": rc}
            print(name, rc, flush=True)
    return out


def moved(before: dict, after: dict, tol: float = 1e-6) -> list[str]:
    lines = []
    for cmd in sorted(before.keys() | after.keys()):
        a, b = before.get(cmd, {}), after.get(cmd, {})
        for key in sorted(a.keys() | b.keys()):
            x, y = a.get(key), b.get(key)
            same = x == y or (
                isinstance(x, float)
                and isinstance(y, float)
                and (math.isclose(x, y, abs_tol=tol) or x != x and y != y)
            )
            if not same and not key.endswith(("seconds", "_s", "per_second", "elapsed")):
                lines.append(f"{cmd}: {key}: {x} -> {y}")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="rerun and compare with results/golden.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    now = run_all()
    if args.check:
        diff = moved(json.loads(RESULTS.read_text()), now)
        print("\n".join(diff) or "no metric moved")
        sys.exit(1 if diff else 0)
    write_results(RESULTS, now, indent=1, sort_keys=True)
