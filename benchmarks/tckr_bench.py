"""TCKR end to end on the embedded default: teacher vs synthetic-data student, accuracy and LiRA AUC.

Runs ``modelmine tckr --set seed=SEED --set teacher.seed=SEED`` in this process
(``_bench.run_cli``) and records its metrics, the seed, the wall time and the machine.
``--cardinality`` takes several values for the accuracy-vs-AUC trade-off (the paper's Figure 5):
then ``results/<name>.json`` also gets ``tradeoff``, a list of ``{"cardinality", "student_acc",
"student_auc", "teacher_acc", "teacher_auc"}``, and the plot is copied next to it. A killed run
resumes in its work folder (``--fresh`` starts over). Usage::

    python benchmarks/tckr_bench.py                                          # -> results/tckr.json
    python benchmarks/tckr_bench.py --cardinality 0.5 1 2 4 --name tckr_tradeoff
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from _bench import config, run_cli
from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results"


def overrides(args: argparse.Namespace) -> dict:
    """The ``modelmine tckr`` config overrides of the command-line options."""
    out: dict = {"seed": args.seed, "teacher.seed": args.seed}
    if args.cardinality:
        out["cardinality"] = args.cardinality
    if args.workers:
        out["workers"] = args.workers
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cardinality", type=float, nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--name", default="tckr")
    ap.add_argument("--work", default="benchmarks/out/tckr_bench")
    ap.add_argument("--fresh", action="store_true", help="delete the work folder first")
    args = ap.parse_args()
    cfg = config("tckr", overrides(args))
    work = Path(args.work) / args.name
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    metrics = run_cli("tckr", work, overrides(args))
    wall = time.time() - t0
    results = {
        "metrics": metrics,
        "tradeoff": [
            {
                "cardinality": c,
                "student_acc": metrics[f"student_x{c:g}_acc"],
                "student_auc": metrics[f"student_x{c:g}_auc"],
                "teacher_acc": metrics["teacher_acc"],
                "teacher_auc": metrics["teacher_auc"],
            }
            for c in sorted(set(cfg.cardinality))
        ],
        "wall_seconds": wall,
        "seed": args.seed,
        "config": asdict(cfg),
        **machine_info(),
    }
    write_results(RESULTS / f"{args.name}.json", results)
    for png in ("tradeoff.png", "samples.png"):
        shutil.copy(work / png, RESULTS / f"{args.name}_{png}")
    print(json.dumps(results["metrics"], indent=2))


if __name__ == "__main__":
    main()
