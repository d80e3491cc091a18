"""Classification Accuracy Score of embedded generator files: public glyphs, digits and mnist5k.

    python benchmarks/diffusion_cas.py --weights before=OLD.safetensors after=NEW.safetensors
                                       [--per-class 200] [--work benchmarks/out/cas]

For each ``name=weights`` file: samples ``--per-class`` images per digit with the prompt
"a photo of digit <class>" at the file's stored sampling defaults (steps, CFG), the same seeds for
every file, and scores them with three classifiers: the public-glyph ``cnn`` that ``modelmine
pretrain`` uses (``cas_public``), the default teacher of the private digits (``cas_private``) and
the default teacher of mnist5k (``cas_private_mnist5k``; images resized to its 28x28 input). The
images of each (file, class) are cached, so an interrupted run resumes; the classifiers are trained
once and shared. Results go to ``benchmarks/results/diffusion_cas.json``, one entry per name.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from modelmine.data import DIGIT_NAMES, fit_to
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.pretrain import EVAL_TEMPLATE, public_cas_classifier
from modelmine.diffusion.sampler import sample_batched
from modelmine.metrics import classification_accuracy_score
from modelmine.report import save_grid
from modelmine.teacher import TeacherRunConfig, obtain_teacher, resolve_teacher

RESULTS = Path(__file__).parent / "results" / "diffusion_cas.json"
PRIVATE = ("digits", "mnist5k")


def generate(gen: Generator, parts: Path, per_class: int) -> tuple[torch.Tensor, float]:
    """``per_class`` images of each digit, class-major ``(10 * per_class, C, H, W)``; cached per class."""
    steps, cfg = gen.defaults.get("steps", 30), gen.defaults.get("cfg", 1.5)
    images, seconds = [], 0.0
    for c in range(10):
        path = parts / f"class_{c}.pt"
        if not path.exists():
            t0 = time.time()
            prompts = [EVAL_TEMPLATE.format(c=DIGIT_NAMES[c])] * per_class
            x = sample_batched(gen, prompts, batch_size=250, steps=steps, cfg=cfg, seed=12345 + 1000 * c)
            parts.mkdir(parents=True, exist_ok=True)
            torch.save({"images": x, "seconds": time.time() - t0}, path)
        d = torch.load(path, weights_only=True)
        images.append(d["images"])
        seconds += d["seconds"]
    return torch.cat(images), seconds


def classifiers(work: Path) -> dict:
    """name -> (classifier, input size): the public-glyph cnn and each private dataset's default teacher."""
    out = {"public": (public_cas_classifier(work / "public", 5000)[0], 16)}
    for data in PRIVATE:
        cfg = resolve_teacher(TeacherRunConfig(data=data), data).teacher
        model, info = obtain_teacher(cfg, work / f"teacher_{data}", data=data)
        out[data] = (model, info.image_size)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", nargs="+", required=True, help="name=path.safetensors ...")
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="benchmarks/out/cas")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    clfs = classifiers(work)
    for item in args.weights:
        name, path = item.split("=", 1)
        gen = Generator.embedded(path)
        images, seconds = generate(gen, work / name / "parts", args.per_class)
        labels = torch.arange(10).repeat_interleave(args.per_class)
        entry = {"weights": path, "images": len(images), "sampling_seconds": seconds, **gen.defaults}
        for key, (clf, size) in clfs.items():
            cas, per = classification_accuracy_score(
                clf, fit_to(images, size, 1), labels, per_class=True, num_classes=10
            )
            col = (
                "cas_public"
                if key == "public"
                else ("cas_private" if key == "digits" else f"cas_private_{key}")
            )
            entry[col] = cas
            entry[f"{col}_per_class"] = per
        grid = images.view(10, args.per_class, *images.shape[1:])[:, :10].transpose(0, 1).flatten(0, 1)
        save_grid(out.parent / f"diffusion_cas_{name}.png", grid, nrow=10)
        results[name] = entry
        results.update(per_class=args.per_class, threads=args.threads, **machine_info())
        write_results(out, results)
        print(
            name, {k: round(v, 3) for k, v in entry.items() if k.startswith("cas_") and "per_class" not in k}
        )


if __name__ == "__main__":
    main()
