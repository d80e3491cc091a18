"""Every method with its defaults on each built-in dataset: does it run, and how well, beyond digits.

    python benchmarks/matrix.py [--datasets digits mnist5k patches patches-grey] [--methods teacher cake ...]
                                [--threads 2] [--shadows 4] [--work benchmarks/out/matrix]

Runs each command exactly as a user would (``modelmine <method> --out W/<dataset>/<method> --data
<dataset>``, seed 0, every other setting its default) one after the other, and writes
``benchmarks/results/matrix.json`` after every finished run, so a killed matrix resumes run by run
(a finished run folder is reused; an interrupted one resumes inside the command). Per run: the exit
status, the teacher's accuracy, the method's headline (student accuracy, membership AUC or
extraction rate) and the wall time of the run that did the work.

Datasets: the three built-ins and ``patches-grey``, a grey non-digit folder made here
(:mod:`_patches`: patches of six pictures shipped in scikit-learn and matplotlib, 200 train and 60
test per class, passed as ``--data DIR/train --test-data DIR/test``). ``extract`` on it fine-tunes on
the first 10 train images of class 3 (``terrain``, the embedded default's ``train_class`` and
``num_train_images``) with the prompt "a photo of terrain", its other train and test images of that
class the non-members; ``audit membership`` needs a target trained on known members and is not run
on the folder.

Methods that need a generator fine-tuned on the data (``tckr``, ``extract``) run the embedded
16x16 generator that makes the data's channels on the dataset resized to it; the teacher and the
scores stay at the data's own size. The one setting that is not the default: ``--shadows`` reference models for ``tckr`` and
``audit membership`` (default 4 here, 16 in the commands: each is a teacher trained again, and the
membership numbers of 16 are measured in ``mia_refs.json`` and ``tckr_tradeoff.json``); the
argv of every run is recorded.

``cake (cake_cnn)`` is CAKE in the official code's MNIST setting: the teacher and the student are
the official ``Cnn`` (preset ``cake_cnn``, no BatchNorm; it needs images of 21 pixels or more, so it is
skipped on the 16-pixel digits); DeepInversion's row keeps its default BatchNorm teacher (``cnn``),
which it needs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import torch

from _patches import write_patches
from _results import machine_info, write_results
from modelmine.classifiers import CAKE_CNN_MIN_SIZE
from modelmine.cli import main as cli
from modelmine.data import dataset_size
from modelmine.diffusion.generator import GeneratorOptions

RESULTS = Path(__file__).parent / "results" / "matrix.json"
# method -> (command words, extra arguments); every method takes --data <dataset>
METHODS = {
    "teacher": (["teacher"], []),
    "cake": (["cake"], []),
    # the official CAKE MNIST setting beside ours: its no-BatchNorm Cnn as teacher and student
    "cake (cake_cnn)": (["cake"], ["--set", "teacher.preset=cake_cnn", "--set", "student.preset=null"]),
    "deepinversion": (["deepinversion"], []),  # its default teacher (cnn) has the BatchNorm it needs
    "ddis": (["ddis"], []),
    "tckr": (["tckr"], []),
    "extract": (["extract"], []),
    "audit membership": (["audit", "membership"], []),
}
SHADOWED = ("tckr", "audit membership")  # methods that train reference models (--shadows)
HEADLINE = {  # method -> (metric key, what it is)
    "teacher": ("teacher_acc", "test accuracy"),
    "cake": ("student_acc", "student accuracy"),
    "cake (cake_cnn)": ("student_acc", "student accuracy"),
    "deepinversion": ("student_acc", "student accuracy"),
    "ddis": ("student_acc", "student accuracy"),
    "tckr": ("student_acc", "student accuracy"),
    "extract": ("success_rate", "FineXtract success rate"),
    "audit membership": ("lira_auc", "LiRA AUC"),
}


FOLDERS = {"patches-grey": lambda work: write_patches(work / "patches-grey-data", 16, 200, 60)}


FOLDER_SKIPS = ("audit membership",)


def extract_folders(
    train: Path, test: Path, out: Path, class_index: int = 3, n: int = 10
) -> tuple[Path, Path]:
    """One class's first ``n`` train images (the fine-tuning set) and its other images (non-members)."""
    cls = sorted(d.name for d in train.iterdir() if d.is_dir())[class_index]
    files = sorted((train / cls).glob("*.png")) + sorted((test / cls).glob("*.png"))
    for folder, part in ((out / "members" / cls, files[:n]), (out / "nonmembers" / cls, files[n:])):
        folder.mkdir(parents=True, exist_ok=True)
        for f in part:
            shutil.copyfile(f, folder / f.name if f.parent.parent == train else folder / f"test_{f.name}")
    return out / "members", out / "nonmembers"


def data_args(method: str, dataset: str, work: Path) -> list[str]:
    """The data flags of one run: a built-in by name, a folder dataset as train and test folders."""
    if dataset not in FOLDERS:
        # the audit's population is the dataset (members: its train split, non-members: its held-out)
        return ["--population" if method == "audit membership" else "--data", dataset]
    train, test = FOLDERS[dataset](work)
    if method == "extract":
        members, nonmembers = extract_folders(train, test, work / f"{dataset}-extract")
        cls = next(members.iterdir()).name
        return ["--data", str(members), "--heldout-data", str(nonmembers), "--prompt", f"a photo of {cls}"]
    return ["--data", str(train), "--test-data", str(test)]


def run_one(method: str, dataset: str, folder: Path, shadows: int, work: Path) -> dict:
    words, extra = METHODS[method]
    if method in SHADOWED:
        extra = [*extra, "--set", f"num_shadows={shadows}"]
    argv = [*words, "--out", str(folder), *data_args(method, dataset, work), *extra]
    t0 = time.time()
    rc = cli(argv)
    wall = time.time() - t0
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    return {"exit_status": rc, "wall_seconds": wall, "metrics": metrics, "argv": argv}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist5k", "patches", "patches-grey"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shadows", type=int, default=4, help="reference models for tckr and audit membership")
    ap.add_argument("--work", default="benchmarks/out/matrix")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--note", default="", help="conditions worth knowing, e.g. a CPU shared with other jobs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    runs = results.setdefault("runs", {})
    for dataset in args.datasets:
        for method in args.methods:
            key = f"{dataset}/{method}"
            size = 16 if dataset in FOLDERS else dataset_size(dataset)
            if method == "cake (cake_cnn)" and size < CAKE_CNN_MIN_SIZE:
                continue  # the official MNIST Cnn does not fit this dataset's images
            if dataset in FOLDERS and method in FOLDER_SKIPS:
                continue
            if runs.get(key, {}).get("exit_status") == 0:
                continue  # finished earlier: keep its wall time
            print(f"== {key}", flush=True)
            runs[key] = run_one(
                method,
                dataset,
                Path(args.work) / dataset / re.sub(r"\W+", "_", method).strip("_"),
                args.shadows,
                Path(args.work),
            )
            sampler = GeneratorOptions().sampler  # the generator commands' default, for RESULTS.md
            runs[key]["sampler"] = sampler  # rows without it were measured with earlier defaults
            results.update(headline=HEADLINE, threads=args.threads, seed=0, sampler=sampler, **machine_info())
            if args.note:
                results["note"] = args.note
            write_results(out, results)
    if args.note and results.get("note") != args.note:  # a note for runs already finished
        results["note"] = args.note
        write_results(out, results)


if __name__ == "__main__":
    main()
