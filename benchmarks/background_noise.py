"""How the default teacher reads images with a faint background: why generated data can fail on mnist5k.

    python benchmarks/background_noise.py [--datasets digits mnist5k] [--levels 0 0.01 0.02 0.05 0.1]
                                       [--work benchmarks/out/background_noise]

For each built-in dataset: the default teacher (trained once, cached in ``--work``), its accuracy on
the real test split, on the test split passed through the embedded generator's 16x16 resolution
(down and back up), and at that resolution with uniform background noise of mean ``level`` added
(what a tiny pixel-space generator leaves in its backgrounds; scikit-learn digits and MNIST have
exactly black ones), with the share of images it then calls its most frequent class. Optionally
(``--synthetic DIR``) the same for a TCKR run's generated images against their prompted class.
Writes ``benchmarks/results/background_noise.json``.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import torch
from safetensors.torch import load_file

from _results import machine_info, write_results
from modelmine.classifiers import predict_logits
from modelmine.data import fit_to, load_builtin
from modelmine.teacher import TeacherRunConfig, obtain_teacher, resolve_teacher

RESULTS = Path(__file__).parent / "results" / "background_noise.json"


def scores(teacher, images: torch.Tensor, labels: torch.Tensor, size: int) -> dict:
    """Accuracy and the share of the most frequent prediction, images fitted to the teacher's ``size``."""
    pred = predict_logits(teacher, fit_to(images, size, 1)).argmax(1)
    top = torch.bincount(pred).max().item() / len(pred)
    return {"acc": (pred == labels).float().mean().item(), "top_class_share": top}


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
        results["datasets"][data] = entry
        print(data, entry, flush=True)
    results.update(machine_info())
    write_results(Path(args.out), results)


if __name__ == "__main__":
    main()
