"""DDIS on the embedded default, with its ablations and DeepInversion at the same number of images.

Runs ``modelmine.methods.ddis.run`` with its defaults (DDIS = DAG + CAT, plus plain / DAG-only /
CAT-only generations, each distilled into the same student recipe), then DeepInversion on the same
teacher with as many images (its default batch size, ``num_images / batch_size`` batches).
Writes ``benchmarks/results/ddis.json`` and copies the sample grids. Usage::

    python benchmarks/ddis_bench.py [--seed 0] [--work /tmp/ddis_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from modelmine.methods import ddis, deepinversion

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/ddis_bench")
    ap.add_argument("--name", default="ddis")
    ap.add_argument("--set", nargs="*", default=[], help="DDIS config overrides key=value")
    args = ap.parse_args()
    from modelmine.config import load_config, parse_set

    cfg = load_config(ddis.DdisConfig, None, parse_set(args.set))
    cfg.seed = cfg.teacher.seed = args.seed
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    metrics = ddis.run(cfg, work / "ddis")
    ddis_wall = time.time() - t0

    (work / "deepinversion").mkdir(parents=True)
    shutil.copy(work / "ddis" / "teacher.safetensors", work / "deepinversion" / "teacher.safetensors")
    di_cfg = deepinversion.DeepInversionConfig(seed=args.seed)
    di_cfg.num_batches = max(1, round(cfg.num_images / di_cfg.batch_size))
    torch.set_num_threads(2)
    t0 = time.time()
    di = deepinversion.run(di_cfg, work / "deepinversion")
    results = {
        "ddis": metrics,
        "ddis_wall_seconds": ddis_wall,
        "deepinversion": di,
        "deepinversion_wall_seconds": time.time() - t0,
        "seed": args.seed,
        "config": asdict(cfg),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    for v in ddis.VARIANTS:
        if (work / "ddis" / f"grid_{v}.png").exists():
            shutil.copy(work / "ddis" / f"grid_{v}.png", RESULTS / f"{args.name}_grid_{v}.png")
    print(json.dumps({k: results[k] for k in ("ddis", "deepinversion")}, indent=2))


if __name__ == "__main__":
    main()
