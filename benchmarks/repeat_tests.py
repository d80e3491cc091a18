"""Run test files N times in a row and record every outcome: the check that no test depends on timing.

    python benchmarks/repeat_tests.py [--times 20] [--name repeat_tests] [TEST_PATH ...]

Each repetition is a fresh ``pytest -q -p no:cacheprovider`` process over the given paths (default:
the whole suite). Writes ``benchmarks/results/<name>.json`` after every repetition (passes, failures,
the failing test ids, seconds), so an interrupted series keeps what it ran and a rerun continues it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results"


def one_run(paths: list[str]) -> dict:
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
        capture_output=True,
        text=True,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|error|errors)", tail)}
    return {
        "returncode": proc.returncode,
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
        "failing": re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M),
        "failure_lines": re.findall(r"^E   .*$", proc.stdout, flags=re.M)[:20] if proc.returncode else [],
        "seconds": time.time() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=["tests"])
    ap.add_argument("--times", type=int, default=20)
    ap.add_argument("--name", default="repeat_tests")
    args = ap.parse_args()
    path = RESULTS / f"{args.name}.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    if res.get("paths") != args.paths:
        res = {"paths": args.paths, "runs": []}
    while len(res["runs"]) < args.times:
        res["runs"].append(one_run(args.paths))
        res |= {
            "times": len(res["runs"]),
            "all_passed": all(r["returncode"] == 0 for r in res["runs"]),
            **machine_info(),
        }
        write_results(path, res)
        print(len(res["runs"]), res["runs"][-1]["passed"], res["runs"][-1]["failed"], flush=True)


if __name__ == "__main__":
    main()
