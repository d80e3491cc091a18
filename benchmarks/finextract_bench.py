"""FineXtract vs the CFG baseline on the embedded default, 500 generations each.

Runs ``modelmine.methods.finextract.run`` (the same code as ``modelmine extract``) in a fresh
folder: the embedded generator fine-tuned on 10 private digits with LoRA and fully, then
FineXtract and CFG (scale 3.0, the official baseline) from the same start noise, clustered and
scored the same way. ``--extra-cfg`` adds baselines at other CFG scales from the same noise
(default 1.5, the embedded generator's own sampling scale). Records the metrics, the ratio of
success rates (the paper's, at the fixed similarity threshold; target: >= 2) and of the
non-member-calibrated rates, the seed, the wall time and the machine, and copies ``matches.png``
next to the JSON. Usage::

    python benchmarks/finextract_bench.py                 # -> results/finextract.json (~10 min, 2 cores)
    python benchmarks/finextract_bench.py --quick --results /tmp/fx_results   # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from _results import machine_info, write_results
from modelmine.methods import finextract

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--extra-cfg", type=float, nargs="*", default=[1.5])
    ap.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    ap.add_argument("--name", default=None)
    ap.add_argument("--work", default="/tmp/finextract_bench")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    name = args.name or ("finextract_quick" if args.quick else "finextract")
    cfg = finextract.ExtractConfig(seed=args.seed, extra_baseline_cfgs=list(args.extra_cfg))
    if args.workers:
        cfg.workers = args.workers
    if args.quick:
        cfg.num_generations, cfg.gen_batch_size, cfg.sample_steps = 12, 6, 3
        cfg.lora.steps = cfg.full.steps = 3
        cfg.workers = 1
    work = Path(args.work) / name
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    metrics = finextract.run(cfg, work)
    wall = time.time() - t0
    base, cal_base = metrics["baseline_success_rate"], metrics["baseline_calibrated_success_rate"]
    results = {
        "metrics": metrics,
        "success_ratio": metrics["success_rate"] / base if base > 0 else None,
        "calibrated_success_ratio": metrics["calibrated_success_rate"] / cal_base if cal_base > 0 else None,
        "target": "success_rate >= 2 x baseline_success_rate at the same num_generations",
        "target_met": metrics["success_rate"] >= 2 * base and metrics["success_rate"] > 0,
        "wall_seconds": wall,
        "seed": args.seed,
        "quick": args.quick,
        "config": asdict(cfg),
        **machine_info(),
    }
    out = Path(args.results)
    write_results(out / f"{name}.json", results)
    shutil.copy(work / "matches.png", out / f"{name}_matches.png")
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
