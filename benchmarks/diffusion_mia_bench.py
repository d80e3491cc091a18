"""Membership inference against TCKR's LoRA generator, on each dataset's TCKR run.

    python benchmarks/diffusion_mia_bench.py --run digits=benchmarks/out/tckr_bench/tckr \
        --run mnist5k=benchmarks/out/matrix/mnist5k/tckr

Runs ``modelmine audit generator`` with its defaults on each finished TCKR run folder, except
``num_generations`` (100 here: the extraction is measured by ``audit_generator_bench.py``; this
benchmark is about the membership attacks, which score every member and held-out image whatever
the number of generations). Records per dataset the loss attack's and PIA's AUC and TPR at 1% FPR
(members: the run's private training images; non-members: its held-out images, prompted the same
way), the attacks' wall time (``mia_seconds``) and the whole command's. Results go to
``results/diffusion_mia.json`` after every dataset; a dataset already there is kept (resumable).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _bench import run_cli
from _results import machine_info, write_results
from modelmine.config import read_yaml_mapping

RESULTS = Path(__file__).parent / "results" / "diffusion_mia.json"
KEYS = ("mia_loss_auc", "mia_loss_tpr_at_1pct_fpr", "mia_pia_auc", "mia_pia_tpr_at_1pct_fpr", "mia_seconds",
        "mia_num_nonmembers", "num_train_images")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", required=True, help="DATASET=TCKR_RUN_FOLDER (repeatable)")
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--work", default="benchmarks/out/diffusion_mia")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = results.setdefault("runs", {})
    for spec in args.run:
        dataset, folder = spec.split("=", 1)
        if dataset in runs:
            continue
        t0 = time.time()
        overrides = {"run": folder, "num_generations": args.generations}
        m = run_cli("audit generator", Path(args.work) / dataset, overrides)
        runs[dataset] = {
            "run": folder,
            "metrics": {k: m[k] for k in KEYS if k in m},
            "wall_seconds": time.time() - t0,
            "tckr_config": read_yaml_mapping(Path(folder) / "config.yaml", "TCKR config"),
        }
        results.update(num_generations=args.generations, **machine_info())
        write_results(RESULTS, results)
        print(dataset, runs[dataset]["metrics"], flush=True)


if __name__ == "__main__":
    main()
