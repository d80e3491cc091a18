"""LiRA audit of the default digits teacher: AUC and TPR at low FPR with N shadow models.

    python benchmarks/lira_bench.py [--shadows 16] [--threads 2] [--work runs/bench-lira]

Runs `modelmine audit lira` in this process (``_bench.run_cli``; members: the 1,077 private
training digits; non-members: the 360 held-out digits) and writes
benchmarks/results/lira_teacher.json. Shadows are kept in the work folder, so a second call resumes
instead of retraining them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _bench import run_cli
from _results import write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shadows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="runs/bench-lira")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lira_teacher.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    metrics = run_cli("audit lira", args.work, None, "--shadows", str(args.shadows))
    result = {"threads": args.threads, "wall_seconds": time.perf_counter() - t0, "keep_seed": 0, **metrics}
    write_results(args.out, result, sort_keys=True)
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
