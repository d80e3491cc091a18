"""DDIS's class tokens that never reach their class: fall back to the start, or keep the lowest loss?

    python benchmarks/ddis_cat_keep.py [--datasets digits patches patches-grey] [--threads 2]

For each dataset, ``modelmine ddis`` with its defaults and ``--set ablations=false`` (one student),
once per ``cat_keep`` (``best``: the default, the official code's lowest-loss token; ``start``: a
class the classifier never accepted gets its starting embedding back; ``last``: the last
update's), and once with ``--set cat=false`` (DAG only). Same seed, same start noise, same targets:
the runs differ by the CAT tokens alone. Records per run the student's accuracy on the real test
set, how many classes CAT stopped, FID / recall on the metric classifier, and the wall time.
``patches-grey`` is the grey non-digit folder of ``matrix.py``. Results go to
``results/ddis_cat_keep.json`` after every run; finished runs are kept (resumable).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from matrix import FOLDERS, data_args
from modelmine.cli import main as cli

RESULTS = Path(__file__).parent / "results" / "ddis_cat_keep.json"
VARIANTS = {"start": ["--set", "cat_keep=start"], "best": ["--set", "cat_keep=best"],
            "last": ["--set", "cat_keep=last"], "dag_only": ["--set", "cat=false"]}  # fmt: skip
KEYS = ("student_acc", "teacher_acc", "cat_classes_stopped", "fid", "recall", "teacher_acc_on_synthetic")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["digits", "patches", "patches-grey"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="benchmarks/out/ddis_cat_keep")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = results.setdefault("runs", {})
    work = Path(args.work)
    for dataset in args.datasets:
        for variant, extra in VARIANTS.items():
            key = f"{dataset}/{variant}"
            if runs.get(key, {}).get("exit_status") == 0:
                continue
            folder = work / dataset / variant
            argv = ["ddis", "--out", str(folder), *data_args("ddis", dataset, work), "--set", "ablations=false",
                    "--set", f"threads={args.threads}", *extra]  # fmt: skip
            t0 = time.time()
            rc = cli(argv)
            m = json.loads((folder / "metrics.json").read_text()) if rc == 0 else {}
            runs[key] = {"exit_status": rc, "wall_seconds": time.time() - t0, "argv": argv,
                         "metrics": {k: m[k] for k in KEYS if k in m}}  # fmt: skip
            results.update(threads=args.threads, folders=sorted(FOLDERS), **machine_info())
            write_results(RESULTS, results)
            print(key, runs[key]["metrics"], flush=True)


if __name__ == "__main__":
    main()
