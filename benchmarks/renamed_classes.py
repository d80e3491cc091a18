"""TCKR on class names the embedded tokenizer does not know: the same images, two namings.

    python benchmarks/renamed_classes.py [--classes 0 1 2] [--names apple bus cat] [--shadows 4]

Builds three ImageFolders (train / held-out / test) of the scikit-learn digits of ``--classes``,
once with their digit names (``zero``, ``one``, ``two``) and once renamed (``apple``, ``bus``,
``cat``: words the embedded tokenizer does not know, so the run adds them as new tokens trained with
the LoRA), and runs ``modelmine tckr --data`` on each with its defaults, except ``num_shadows``
(the membership audit is not what this measures; 4 keeps the run short) and no ablation students.
Records, per naming, the teacher's accuracy, the student's, ``synthetic_teacher_agreement`` (the
share of synthetic images the teacher classifies as their prompted class) and the words the run
added. Target: renamed agreement within 0.1 of the digit-named one, student within 3 points of its
teacher. Resumable: a finished naming is kept; an interrupted run resumes inside tckr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from modelmine.cli import main as cli
from modelmine.data import DIGIT_NAMES, ImageSet, load_digits, save_image_folder
from modelmine.diffusion.tokens import LEARNED_EMBEDS
from modelmine.runs import load_tensors

RESULTS = Path(__file__).parent / "results" / "renamed_classes.json"


def build_folders(root: Path, classes: list[int], names: list[str]) -> dict[str, Path]:
    """train / heldout / test folders of the digits of ``classes`` named ``names``."""
    folders = {}
    for split in ("train", "heldout", "test"):
        d = load_digits(split)
        keep = torch.isin(d.labels, torch.tensor(classes))
        labels = torch.tensor([classes.index(y) for y in d.labels[keep].tolist()])
        folder = root / split
        if not folder.exists():
            save_image_folder(folder, ImageSet(d.images[keep], labels, list(names)))
        folders[split] = folder
    return folders


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--names", nargs="+", default=["apple", "bus", "cat"])
    ap.add_argument("--shadows", type=int, default=4)
    ap.add_argument("--work", default="benchmarks/out/renamed_classes")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    runs = results.setdefault("runs", {})
    namings = {"digit_names": [DIGIT_NAMES[c] for c in args.classes], "renamed": list(args.names)}
    for key, names in namings.items():
        if runs.get(key, {}).get("exit_status") == 0:
            continue
        root = Path(args.work) / key
        f = build_folders(root / "data", args.classes, names)
        argv = ["tckr", "--out", str(root / "run"), "--data", str(f["train"]), "--test-data", str(f["test"]),
                "--set", f"heldout_data={f['heldout']}", "--set", f"num_shadows={args.shadows}",
                "--set", "ablations=false"]  # fmt: skip
        print("==", key, " ".join(argv), flush=True)
        err = io.StringIO()
        t0 = time.time()
        with contextlib.redirect_stderr(err):
            rc = cli(argv)
        wall = time.time() - t0
        if rc != 0:
            print(err.getvalue()[-2000:], flush=True)
        notes = [line for line in err.getvalue().splitlines() if "new token" in line or "not know" in line]
        embeds = sorted((root / "run").rglob(LEARNED_EMBEDS))
        added = sorted(load_tensors(embeds[0])) if embeds else []
        mpath = root / "run" / "metrics.json"
        m = json.loads(mpath.read_text()) if mpath.exists() else {}
        runs[key] = {
            "exit_status": rc,
            "class_names": names,
            "teacher_acc": m.get("teacher_acc"),
            "student_acc": m.get("student_acc"),
            "synthetic_teacher_agreement": m.get("synthetic_teacher_agreement"),
            "added_words": added,
            "new_words_note": notes,
            "wall_seconds": wall,
            "argv": argv,
        }
        results.update(classes=args.classes, **machine_info())
        if args.note:
            results["note"] = args.note
        write_results(out, results)
    a, b = runs.get("digit_names", {}), runs.get("renamed", {})
    if a.get("exit_status") == 0 and b.get("exit_status") == 0:
        results["agreement_gap"] = a["synthetic_teacher_agreement"] - b["synthetic_teacher_agreement"]
        results["renamed_student_gap"] = b["teacher_acc"] - b["student_acc"]
        results["target_met"] = results["agreement_gap"] <= 0.1 and results["renamed_student_gap"] <= 0.03
        write_results(out, results)


if __name__ == "__main__":
    main()
