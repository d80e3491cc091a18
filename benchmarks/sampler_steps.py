"""Samplers against step counts on the embedded generator: CAS and images per second.

    python benchmarks/sampler_steps.py [--per-class 100] [--steps 5 10 15 20 30 50]
                                       [--samplers ddim dpmpp_2m] [--name sampler_steps]

For each sampler and step count: ``--per-class`` images of each digit with the prompt "a photo of
digit <class>" at the generator's stored CFG, the same start noise for every setting (seeded by
class), scored by the public-glyph ``cnn`` of ``modelmine pretrain`` (``cas_public``) and the default
teacher of the private digits (``cas_private``); ``fid_public`` is the Frechet distance between
the images and as many held-out public glyphs (seeds never used in pretraining) on the public
classifier's penultimate features; ``images_per_second`` is the sampling rate (one torch thread).
Every finished setting is written to ``benchmarks/results/<name>.json`` at once, so an
interrupted run continues where it stopped (a setting recorded without ``fid_public`` is sampled
again). Each method's own headline at the chosen defaults is in ``speed.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _results import machine_info, write_results
from modelmine.data import DIGIT_NAMES, fit_to, render_glyphs
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.pretrain import EVAL_TEMPLATE, public_cas_classifier
from modelmine.diffusion.sampler import sample_batched
from modelmine.metrics import classification_accuracy_score, classifier_features, frechet_distance
from modelmine.teacher import TeacherRunConfig, obtain_teacher, resolve_teacher

RESULTS = Path(__file__).parent / "results"


def score(
    gen: Generator, sampler: str, steps: int, per_class: int, clfs: dict, reference: torch.Tensor
) -> dict:
    """One setting: the images of every class, their CAS per classifier, their FID against the
    ``reference`` features ``(N, D)`` of the public classifier, and the sampling rate."""
    gen.sampler = sampler
    prompts = [EVAL_TEMPLATE.format(c=DIGIT_NAMES[c]) for c in range(10) for _ in range(per_class)]
    t0 = time.time()
    images = sample_batched(
        gen, prompts, batch_size=per_class * 10, steps=steps, cfg=gen.defaults["cfg"], seed=1
    )
    seconds = time.time() - t0
    labels = torch.arange(10).repeat_interleave(per_class)
    out = {
        "sampler": sampler,
        "steps": steps,
        "images": len(images),
        "images_per_second": len(images) / seconds,
    }
    for name, (clf, size) in clfs.items():
        out[f"cas_{name}"] = classification_accuracy_score(clf, fit_to(images, size, 1), labels)
    public = classifier_features(clfs["public"][0])
    out["fid_public"] = frechet_distance(reference, public(fit_to(images, clfs["public"][1], 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 20, 30, 50])
    ap.add_argument("--samplers", nargs="+", default=["ddim", "dpmpp_2m"])
    ap.add_argument("--work", default="benchmarks/out/sampler_steps")
    ap.add_argument("--name", default="sampler_steps", help="results/<name>.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    path = RESULTS / f"{args.name}.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    if res.get("per_class") != args.per_class:
        res = {"per_class": args.per_class, "runs": {}}
    gen = Generator.embedded()
    cfg = resolve_teacher(TeacherRunConfig(), "digits").teacher
    clfs = {
        "public": (public_cas_classifier(work / "public", 5000)[0], 16),
        "private": (obtain_teacher(cfg, work / "teacher", data="digits")[0], cfg.image_size),
    }
    glyphs = render_glyphs(10 * args.per_class, seed=900_003)  # held out, like the classifier's own
    reference = classifier_features(clfs["public"][0])(glyphs.images)
    for sampler in args.samplers:
        for steps in args.steps:
            key = f"{sampler}_{steps}"
            if "fid_public" not in res["runs"].get(key, {}):
                with torch.inference_mode():
                    res["runs"][key] = score(gen, sampler, steps, args.per_class, clfs, reference)
                res |= {"cfg": gen.defaults["cfg"], "threads": 1, **machine_info()}
                write_results(path, res)
            print(
                key, {k: round(v, 3) for k, v in res["runs"][key].items() if isinstance(v, float)}, flush=True
            )


if __name__ == "__main__":
    main()
