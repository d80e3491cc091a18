"""LiRA audit of the default digits teacher: AUC and TPR at low FPR with N shadow models.

    python benchmarks/lira_bench.py [--shadows 16] [--threads 2] [--work runs/bench-lira]

Runs `modelmine audit lira` (members: the 1,077 private training digits; non-members: the 360
held-out digits) and writes benchmarks/results/lira_teacher.json. Shadows are kept in the work
folder, so a second call resumes instead of retraining them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from modelmine.cli import main as cli


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shadows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="runs/bench-lira")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lira_teacher.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if cli(["audit", "lira", "--out", args.work, "--shadows", str(args.shadows)]) != 0:
        raise SystemExit("audit failed")
    metrics = json.loads((Path(args.work) / "metrics.json").read_text())
    result = {"threads": args.threads, "wall_seconds": time.perf_counter() - t0, "keep_seed": 0, **metrics}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
