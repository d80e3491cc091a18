"""`modelmine audit generator` on the TCKR benchmark's LoRA: how many private digits it leaks.

Runs ``modelmine audit generator --set run=RUN --set seed=SEED`` in this process
(``_bench.run_cli``) with its defaults (500 FineXtract generations and 500 CFG-3 generations from
the same noise, prompts drawn from the private images' ``"<class>: <caption>"`` prompts) on the run
folder that ``benchmarks/tckr_bench.py`` left (``/tmp/tckr_bench/tckr`` by default), in a fresh
folder. Records the metrics, the seed, the wall time and the machine, and copies ``leaks.png``::

    python benchmarks/tckr_bench.py               # first, if /tmp/tckr_bench/tckr is gone
    python benchmarks/audit_generator_bench.py    # -> results/audit_generator.json (~7 min, 2 cores)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="/tmp/tckr_bench/tckr", help="a finished TCKR run folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/audit_generator_bench")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    overrides = {"run": args.run, "seed": args.seed}
    cfg = config("audit generator", overrides)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    metrics = run_cli("audit generator", work, overrides)
    results = {
        "metrics": metrics,
        "tckr_run_metrics": json.loads((Path(args.run) / "metrics.json").read_text()),
        "wall_seconds": time.time() - t0,
        "seed": args.seed,
        "config": asdict(cfg),
        **machine_info(),
    }
    out = Path(args.results)
    write_results(out / "audit_generator.json", results)
    shutil.copy(work / "leaks.png", out / "audit_generator_leaks.png")
    print(json.dumps(results["metrics"], indent=2))


if __name__ == "__main__":
    main()
