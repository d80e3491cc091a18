"""Speed of sharding one command across processes with `accelerate launch` on this machine.

Runs ``modelmine cake`` (default config: teacher training, its synthesis batches, student) three
ways, each in a fresh folder, end to end:

- ``one_process_1_thread``: ``python -m modelmine cake`` with ``OMP_NUM_THREADS=1``;
- ``one_process_N_threads``: the same with ``OMP_NUM_THREADS=N`` (one process using every core);
- ``N_processes_1_thread``: ``accelerate launch --multi_gpu --num_processes N -m modelmine cake``
  with ``OMP_NUM_THREADS=1`` (gloo on the CPU; on a GPU machine the same command uses N GPUs).

Records wall time and summed batch time per way, whether the sharded run's metrics equal the
single-process ones (they must: batches are seeded by index), and the machine. Usage::

    python benchmarks/shard_bench.py [--processes 2]    # -> results/shard.json (~10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results"


def _run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--work", default="/tmp/shard_bench")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    n = args.processes
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    single = [sys.executable, "-m", "modelmine", "cake", "--set", "device=cpu", "--out"]
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "modelmine", "cake",
              "--set", "device=cpu", "--out"]  # fmt: skip
    ways = {
        "one_process_1_thread": (single, 1),
        f"one_process_{n}_threads": (single, n),
        f"{n}_processes_1_thread": (launch, 1),
    }
    results: dict = {"ways": {}}
    metrics = {}
    for name, (cmd, threads) in ways.items():
        wall = _run([*cmd, str(work / name)], threads)
        m = json.loads((work / name / "metrics.json").read_text())
        metrics[name] = {k: v for k, v in m.items() if "seconds" not in k and k != "num_processes"}
        results["ways"][name] = {
            "wall_seconds": wall,
            "synthesis_seconds_summed": m["synthesis_seconds"],
            "student_acc": m["student_acc"],
            "num_processes": m.get("num_processes"),
        }
        print(name, json.dumps(results["ways"][name]))
    first = metrics["one_process_1_thread"]
    results["sharded_metrics_equal_single"] = metrics[f"{n}_processes_1_thread"] == first
    base = results["ways"]["one_process_1_thread"]["wall_seconds"]
    results["speedup_vs_one_thread"] = {k: base / v["wall_seconds"] for k, v in results["ways"].items()}
    results |= {"processes": n, **machine_info(), "cuda": torch.cuda.is_available()}
    write_results(Path(args.results) / "shard.json", results)
    print(json.dumps({k: v for k, v in results.items() if k != "ways"}, indent=2))


if __name__ == "__main__":
    main()
