"""``modelmine audit run`` on the TCKR benchmark's run: membership of teacher and students, the
epsilon lower bounds, and the LoRA's extraction and membership attacks, with the wall time.

    python benchmarks/audit_run_bench.py [--run benchmarks/out/tckr_bench/tckr] [--work benchmarks/out/audit_run]

The run folder is the one ``tckr_bench.py`` leaves (the embedded default on the private digits);
the audit runs with its defaults through the CLI. Writes ``results/audit_run.json`` (the metrics,
the wall time, the machine) and copies the report next to it (``audit_run_report.md``).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _bench import run_cli
from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="benchmarks/out/tckr_bench/tckr")
    ap.add_argument("--work", default="benchmarks/out/audit_run")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    metrics = run_cli("audit run", work, {"run": args.run})
    wall = time.time() - t0
    write_results(RESULTS / "audit_run.json", {"metrics": metrics, "wall_seconds": wall, **machine_info()})
    shutil.copy(work / "report.md", RESULTS / "audit_run_report.md")
    print(f"audit run: {wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()
