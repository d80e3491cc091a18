"""Classification Accuracy Score of an embedded generator file, split over worker processes.

    # generate (one process per class subset; 1 thread each), then score and write results
    python benchmarks/diffusion_cas.py generate --weights W --run DIR --classes 0 1 2 3 4
    python benchmarks/diffusion_cas.py generate --weights W --run DIR --classes 5 6 7 8 9
    python benchmarks/diffusion_cas.py score --weights W --run DIR

``generate`` samples ``--per-class`` images per class with the prompt "a photo of digit <class>"
at ``--steps``/``--cfg`` (default: the generator's stored sampling defaults) and saves them under
DIR/cas_parts/. ``score`` scores every part with the public-glyph classifier (``cas_public``) and
the default digits teacher (``cas_private``), both cached in DIR as ``modelmine pretrain`` does,
merges the numbers into DIR/metrics.json and writes DIR/samples.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from modelmine.data import DIGIT_NAMES
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.pretrain import EVAL_TEMPLATE, public_cas_classifier
from modelmine.diffusion.sampler import sample_batched
from modelmine.metrics import classification_accuracy_score
from modelmine.report import save_grid
from modelmine.runs import Run
from modelmine.teacher import TeacherRunConfig, obtain_teacher, resolve_teacher


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["generate", "score"])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = Generator.embedded(args.weights)
    steps = args.steps or gen.defaults.get("steps", 30)
    cfg = args.cfg if args.cfg is not None else gen.defaults.get("cfg", 3.0)
    run = Path(args.run)
    parts = run / "cas_parts"
    if args.mode == "generate":
        for c in args.classes:
            path = parts / f"class_{c}.pt"
            if path.exists():
                continue
            t0 = time.time()
            prompts = [EVAL_TEMPLATE.format(c=DIGIT_NAMES[c])] * args.per_class
            images = sample_batched(gen, prompts, batch_size=250, steps=steps, cfg=cfg, seed=12345 + 1000 * c)
            parts.mkdir(parents=True, exist_ok=True)
            torch.save({"images": images, "seconds": time.time() - t0}, path)
            print(f"class {c}: {args.per_class} images in {time.time() - t0:.0f}s", flush=True)
        return
    loaded = [torch.load(parts / f"class_{c}.pt", weights_only=True) for c in range(10)]
    images = torch.cat([d["images"] for d in loaded])
    labels = torch.arange(10).repeat_interleave(len(loaded[0]["images"]))
    clf, info = public_cas_classifier(run, 5000)
    teacher, _ = obtain_teacher(resolve_teacher(TeacherRunConfig(), "digits").teacher, run)
    cas, per = classification_accuracy_score(clf, images, labels, per_class=True, num_classes=10)
    cas_p, per_p = classification_accuracy_score(teacher, images, labels, per_class=True, num_classes=10)
    n = len(loaded[0]["images"])
    save_grid(
        run / "samples.png",
        images.view(10, n, *images.shape[1:])[:, :10].transpose(0, 1).flatten(0, 1),
        nrow=10,
    )
    sample_seconds = sum(d["seconds"] for d in loaded)
    m = Run(run).log_metrics(
        cas_public=cas,
        cas_private=cas_p,
        **{f"cas_public_{DIGIT_NAMES[i]}": v for i, v in enumerate(per)},
        **{f"cas_private_{DIGIT_NAMES[i]}": v for i, v in enumerate(per_p)},
        public_classifier_acc=info["public_classifier_acc"],
        cas_images=len(images),
        cas_steps=steps,
        cas_cfg=cfg,
        cas_sampling_cpu_seconds=sample_seconds,
    )
    print({k: m[k] for k in ("cas_public", "cas_private", "cas_steps", "cas_cfg")})


if __name__ == "__main__":
    main()
