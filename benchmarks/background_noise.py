"""How the default teacher reads images with a faint background: why generated data can fail on mnist5k.

    python benchmarks/background_noise.py [--datasets digits mnist5k] [--levels 0 0.01 0.02 0.05 0.1]
                                       [--work benchmarks/out/background_noise]

For each built-in dataset: the default teacher (trained once, cached in ``--work``), its accuracy on
the real test split, on the test split passed through the embedded generator's 16x16 resolution
(down and back up), and at that resolution with uniform background noise of mean ``level`` added
(what a tiny pixel-space generator leaves in its backgrounds; scikit-learn digits and MNIST have
exactly black ones), with the share of images it then calls its most frequent class. Optionally
(``--synthetic DIR``) the same for a TCKR run's generated images against their prompted class, and
(``--augmented``) for a teacher of the same preset trained on the clean training images plus a copy
with a random faint background (uniform noise of mean up to 0.05), for the same number of steps:
a candidate mend, not the default.
Writes ``benchmarks/results/background_noise.json``.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import torch
from safetensors.torch import load_file

from _results import machine_info, write_results
from modelmine.classifiers import build_classifier, predict_logits, train_classifier
from modelmine.data import fit_to, load_builtin
from modelmine.teacher import TeacherRunConfig, obtain_teacher, resolve_teacher

RESULTS = Path(__file__).parent / "results" / "background_noise.json"


def scores(teacher, images: torch.Tensor, labels: torch.Tensor, size: int) -> dict:
    """Accuracy and the share of the most frequent prediction, images fitted to the teacher's ``size``."""
    pred = predict_logits(teacher, fit_to(images, size, 1)).argmax(1)
    top = torch.bincount(pred).max().item() / len(pred)
    return {"acc": (pred == labels).float().mean().item(), "top_class_share": top}


def augmented_teacher(data: str, cfg, size: int):
    """The default preset trained on ``data``'s train split plus a faint-background copy of it."""
    train = load_builtin(data, "train", size)
    g = torch.Generator().manual_seed(cfg.seed)
    level = torch.rand(len(train), 1, 1, 1, generator=g) * 0.1  # noise mean up to 0.05
    noisy = (train.images + level * torch.rand(train.images.shape, generator=g)).clamp(0, 1)
    model = build_classifier(cfg.preset, train.num_classes, 1, size)
    images, labels = torch.cat([train.images, noisy]), torch.cat([train.labels, train.labels])
    epochs = max(1, cfg.epochs // 2)  # twice the images: the same number of steps
    return train_classifier(
        model, images, labels, epochs=epochs, lr=cfg.lr, seed=cfg.seed, batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay, augment=cfg.augment,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    ap.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.05, 0.1])
    ap.add_argument("--synthetic", nargs="*", default=[], help="dataset=TCKR_RUN_DIR ...")
    ap.add_argument("--augmented", action="store_true", help="also a teacher trained with faint backgrounds")
    ap.add_argument("--work", default="benchmarks/out/background_noise")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    runs = dict(s.split("=", 1) for s in args.synthetic)
    results: dict = {"levels": args.levels, "datasets": {}}
    for data in args.datasets:
        cfg = resolve_teacher(TeacherRunConfig(data=data), data).teacher
        teacher, info = obtain_teacher(cfg, Path(args.work) / data, data=data)
        test = load_builtin(data, "test")
        low = fit_to(test.images, 16, 1)
        entry = {"real": scores(teacher, test.images, test.labels, info.image_size), "at_16": {}}
        g = torch.Generator().manual_seed(0)
        for level in args.levels:
            noisy = (low + 2 * level * torch.rand(low.shape, generator=g)).clamp(0, 1)
            entry["at_16"][str(level)] = scores(teacher, noisy, test.labels, info.image_size)
        if data in runs:
            files = sorted(glob.glob(f"{runs[data]}/generated_caption/batch_*.safetensors"))
            parts = [load_file(f) for f in files]
            images = torch.cat([p["images"] for p in parts]).float()
            images = images / 255 if images.max() > 1.5 else images
            labels = torch.cat([p["labels"] for p in parts]).long()
            bg = torch.quantile(images.flatten()[:500_000], 0.5).item()
            entry["tckr_synthetic"] = scores(teacher, images, labels, info.image_size) | {"median_pixel": bg}
        if args.augmented:
            aug = augmented_teacher(data, cfg, info.image_size)
            entry["augmented"] = {
                "real": scores(aug, test.images, test.labels, info.image_size),
                "at_16": scores(aug, low, test.labels, info.image_size),
            }
            if data in runs:
                entry["augmented"]["tckr_synthetic"] = scores(aug, images, labels, info.image_size)
        results["datasets"][data] = entry
        print(data, entry, flush=True)
    results.update(machine_info())
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
