"""How a teacher reads images with a faint background, and a student images at a generator's resolution.

    python benchmarks/background_noise.py [--datasets digits mnist5k] [--levels 0 0.01 0.02 0.05 0.1]
                                       [--synthetic mnist5k=TCKR_RUN_DIR] [--work benchmarks/out/background_noise]

Why generated data failed on mnist5k, and what the defaults now do about it. For each built-in
dataset and two teachers of the default preset and budget, ``plain`` (``teacher.noise=0``: shifts
only, trained on exactly black backgrounds) and ``default`` (faint pixel noise on half of each
batch, :func:`modelmine.classifiers.faint_noise`): the accuracy on the real test split, on the
test split passed through the embedded generator's 16x16 resolution (down and back up), and at
that resolution with uniform background noise of mean ``level`` added (what a tiny pixel-space
generator leaves in its backgrounds), with the share of images given the most frequent class.
With ``--synthetic DATA=RUN`` (a ``modelmine tckr`` run folder): each teacher's agreement with the
run's generated images' prompted classes, and two students trained on those images with their
prompted classes (hard labels, the default student recipe): one at the generator's 16x16
resolution (the derived ``student.image_size``), one at the images upsampled to the teacher's
size, both tested on the real test split. Writes ``benchmarks/results/background_noise.json``.
"""

from __future__ import annotations

import argparse
import glob
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from _results import machine_info, write_results
from modelmine.classifiers import load_classifier, predict_logits, taking_any_size
from modelmine.data import fit_to, load_builtin
from modelmine.distill import TCKR_STUDENT, StudentConfig, save_student, train_student
from modelmine.teacher import TeacherRunConfig, obtain_teacher, resolve_teacher

RESULTS = Path(__file__).parent / "results" / "background_noise.json"


def scores(model, images: torch.Tensor, labels: torch.Tensor, size: int) -> dict:
    """Accuracy and the share of the most frequent prediction, images fitted to the model's ``size``."""
    pred = predict_logits(model, fit_to(images, size, 1)).argmax(1)
    top = torch.bincount(pred).max().item() / len(pred)
    return {"acc": (pred == labels).float().mean().item(), "top_class_share": top}


def generated(run: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A TCKR run's generated images ``(N, 1, 16, 16)`` in [0, 1] and their prompted classes ``(N,)``."""
    parts = [load_file(f) for f in sorted(glob.glob(f"{run}/generated_caption/batch_*.safetensors"))]
    if not parts:
        raise SystemExit(f"no generated_caption batches in {run}")
    images = torch.cat([p["images"] for p in parts]).float()
    return (images / 255 if images.max() > 1.5 else images), torch.cat([p["labels"] for p in parts]).long()


def resolution_students(info, images, labels, test, work: Path) -> dict:
    """Hard-label students on the generated images ``(N, 1, 16, 16)`` at their own size and upsampled to
    the teacher's size."""
    out = {}
    for name, size in (("generator_size", images.shape[-1]), ("teacher_size", info.image_size)):
        cfg = StudentConfig(
            **{**TCKR_STUDENT, "teacher_on_augmented": False}, image_size=size, hard_labels=True
        )
        path = work / f"student_{name}.safetensors"
        if not path.exists():
            probs = torch.nn.functional.one_hot(labels, info.num_classes).float()
            # native 16x16 images: train_student resizes them to student.image_size itself
            save_student(path, *train_student(cfg, info, images, probs, labels=labels))
        student = taking_any_size(*load_classifier(path))
        out[name] = {"image_size": int(size), **scores(student, test.images, test.labels, info.image_size)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    ap.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.05, 0.1])
    ap.add_argument("--synthetic", nargs="*", default=[], help="dataset=TCKR_RUN_DIR ...")
    ap.add_argument("--work", default="benchmarks/out/background_noise")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    runs = dict(s.split("=", 1) for s in args.synthetic)
    results: dict = {"levels": args.levels, "datasets": {}}
    for data in args.datasets:
        cfg = resolve_teacher(TeacherRunConfig(data=data), data).teacher
        test = load_builtin(data, "test")
        low = fit_to(test.images, 16, 1)
        synthetic = generated(runs[data]) if data in runs else None
        entry: dict = {"teachers": {}}
        for name, teacher_cfg in (("plain", replace(cfg, noise=0.0)), ("default", cfg)):
            teacher, info = obtain_teacher(teacher_cfg, Path(args.work) / data / name, data=data)
            e = {
                "noise": teacher_cfg.noise,
                "real": scores(teacher, test.images, test.labels, info.image_size),
            }
            g = torch.Generator().manual_seed(0)
            e["at_16"] = {}
            for level in args.levels:
                noisy = (low + 2 * level * torch.rand(low.shape, generator=g)).clamp(0, 1)
                e["at_16"][str(level)] = scores(teacher, noisy, test.labels, info.image_size)
            if synthetic is not None:
                e["tckr_synthetic"] = scores(teacher, *synthetic, info.image_size)
            entry["teachers"][name] = e
        if synthetic is not None:
            images = synthetic[0]
            entry["median_pixel"] = torch.quantile(images.flatten()[:500_000], 0.5).item()
            entry["students"] = resolution_students(info, *synthetic, test, Path(args.work) / data)
        results["datasets"][data] = entry
        print(data, entry, flush=True)
    results.update(machine_info())
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
