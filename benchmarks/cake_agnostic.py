"""CAKE's start and step rule on four teachers; DeepInversion on the same teacher as an option.

    python benchmarks/cake_agnostic.py [--datasets digits patches mnist5k digits_mlp]
                                       [--variants generic_adaptive generic batchnorm deepinversion]
                                       [--work benchmarks/out/cake_agnostic]

Per dataset, one teacher (the default recipe, trained by the first run and copied into the others)
and each variant through ``modelmine cake`` / ``modelmine deepinversion`` with their defaults plus
the variant's settings: ``batchnorm`` (the start read off the teacher's first BatchNorm layer, 30
steps per batch: not model-agnostic), ``generic`` (the official N(0, 1) start in the normalised
input space, 30 steps), ``generic_adaptive`` (that start, each batch stepped until 90% of its samples
reach their target, at most 60 steps), ``generic_adaptive_weak_priors`` (the same with the image
priors chosen on digits relaxed: full-resolution pixels, no contrast stretch, ``w_tv`` 1e4) and
``deepinversion``. ``patches`` is the non-digit set of
``_patches.py`` (six source pictures, grey 16 px); ``digits_mlp`` the digits with an MLP teacher,
which has no BatchNorm layer for DeepInversion (or the batchnorm start) to read. Each finished
(dataset, variant) is written to ``results/cake_agnostic.json`` at once; a re-run continues with
the missing ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _bench import run_cli
from _patches import write_patches
from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results" / "cake_agnostic.json"
VARIANTS = {
    "batchnorm": ("cake", {"start": "batchnorm"}),
    "generic": ("cake", {"start": "generic"}),
    "generic_adaptive": ("cake", {"start": "generic", "target_share": 0.9, "num_steps": 60}),
    # the digit-chosen image priors off (full-resolution pixels, no stretch, a weaker TV)
    "generic_adaptive_weak_priors": (
        "cake",
        {
            "start": "generic",
            "target_share": 0.9,
            "num_steps": 60,
            "downsample": 1,
            "stretch": None,
            "w_tv": 1e4,
        },
    ),  # fmt: skip
    "deepinversion": ("deepinversion", {}),  # not in the default run: the target is the teacher
}
KEYS = ("teacher_acc", "student_acc", "synthesis_target_acc", "synthesis_steps", "synthesis_seconds",
        "start_mean", "start_std")  # fmt: skip


def data_overrides(name: str, work: Path) -> dict:
    """The data (and teacher) settings of a dataset name; ``digits_mlp``: a teacher without BatchNorm."""
    if name == "digits_mlp":
        return {"data": "digits", "teacher": {"preset": "mlp"}}
    if name != "patches":
        return {"data": name}
    train, test = write_patches(work / "patches16")
    return {"data": str(train), "test_data": str(test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "patches", "mnist5k", "digits_mlp"])
    ap.add_argument("--variants", nargs="+", default=["generic_adaptive", "generic", "batchnorm"],
                    choices=list(VARIANTS))  # fmt: skip
    ap.add_argument("--work", default="benchmarks/out/cake_agnostic")
    args = ap.parse_args()
    work = Path(args.work)
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    for dataset in args.datasets:
        data = data_overrides(dataset, work)
        for variant in args.variants:
            key = f"{dataset}/{variant}"
            if key in res["runs"] or (dataset == "digits_mlp" and variant == "batchnorm"):
                continue  # without BatchNorm the batchnorm start is the generic one
            command, overrides = VARIANTS[variant]
            out = work / dataset / variant
            shutil.rmtree(out, ignore_errors=True)
            teacher = next(work.glob(f"{dataset}/*/teacher.safetensors"), None)
            if teacher is not None:  # the dataset's one teacher, trained by its first run
                out.mkdir(parents=True)
                shutil.copy(teacher, out / "teacher.safetensors")
            t0 = time.time()
            m = run_cli(command, out, {**data, **overrides})
            res["runs"][key] = {k: m[k] for k in KEYS if k in m} | {"wall_seconds": time.time() - t0}
            res |= {"threads": 1, **machine_info()}
            write_results(RESULTS, res)
            print(key, {k: round(v, 3) for k, v in res["runs"][key].items()}, flush=True)


if __name__ == "__main__":
    main()
