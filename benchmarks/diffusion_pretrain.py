"""The embedded generator's pretraining and its Classification Accuracy Score.

    python benchmarks/diffusion_pretrain.py [--out runs/pretrain] [--set key=value ...] [--name NAME]
    python benchmarks/diffusion_pretrain.py --out runs/pretrain-rgb --name diffusion_pretrain_rgb \
        --set channels=3 --set init_from=embedded --set prediction_type=v_prediction \
        --set timestep_spacing=trailing --set steps=10000 --set guidance_scale=3 --set threads=2 \
        --cfg-probe 1.5 2 3 4 --hue-probe                               # the colour model

Runs (or resumes, or just reads back) ``modelmine pretrain --out DIR`` in this process
(``_bench.run_cli``) and copies its metrics (``cas_public``, ``cas_private``, per-class CAS,
training time and settings) to benchmarks/results/diffusion_pretrain.json and its sample grid (one
column per digit, prompt "a photo of digit <class>") to
benchmarks/results/diffusion_pretrain_samples.png (``--name``: other file names, e.g. the colour model's).
``--cfg-probe 1.5 2 3 4``: also the quick CAS (50 images per digit, the run's public classifier) at
each CFG scale, the probe that picks the model's stored ``guidance_scale``. ``--hue-probe`` (colour
models): 32 images per hue word prompted ``"leaves: <caption> bold <hue>"`` at the stored settings,
and the share whose own caption (the attribute captioner's hue word) names the prompted hue: does the
model follow colour words (chance: 1 in 6)?
Target (issue 3): cas_public >= 0.90 at the default sampling settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import yaml

from _bench import run_cli
from _results import write_results
from modelmine.captioning import HUE_WORDS, colour_words, measure_general
from modelmine.diffusion.generator import Generator
from modelmine.diffusion.pretrain import measure_cas, public_cas_classifier
from modelmine.diffusion.sampler import sample_batched

HUE_CAPTION = "leaves: dark faint smooth horizontal large centered bold {}"


def hue_probe(gen: Generator, per_word: int = 32) -> dict:
    """Per hue word, the share of generated images whose measured hue word is the prompted one."""
    out = {}
    for word in HUE_WORDS:
        x = sample_batched(gen, [HUE_CAPTION.format(word)] * per_word, batch_size=per_word,
                           steps=gen.defaults["steps"], cfg=gen.defaults["cfg"], seed=4242)  # fmt: skip
        named = [w[1] if w else None for w in colour_words(measure_general(x))]
        out[word] = sum(n == word for n in named) / per_word
    return {"per_word": out, "mean": sum(out.values()) / len(out), "prompt": HUE_CAPTION}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/pretrain")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--name", default="diffusion_pretrain")
    ap.add_argument("--cfg-probe", nargs="*", type=float, default=[])
    ap.add_argument("--hue-probe", action="store_true")
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. run history)")
    ap.add_argument("--logs", nargs="*", default=[], help="train_log.jsonl files of earlier phases")
    ap.add_argument("--extra-train-seconds", type=float, default=0.0, help="earlier phases (warm start)")
    args = ap.parse_args()
    run = Path(args.out)
    if not (run / "metrics.json").exists() or "cas_public" not in json.loads(
        (run / "metrics.json").read_text()
    ):
        run_cli("pretrain", args.out, None, *[w for s in args.set for w in ("--set", s)])
    metrics = json.loads((run / "metrics.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else None
    weights = next(
        p for p in (run / "embedded_generator.json", run / "embedded_generator_rgb.json") if p.exists()
    )
    gen_json = json.loads(weights.read_text())
    logs = [run / "train_log.jsonl", *map(Path, args.logs)]
    trajectory = []
    for path in logs:
        if path.exists():
            for line in path.read_text().splitlines():
                r = json.loads(line) if line.strip() else {}
                if "cas_public_quick" in r:
                    trajectory.append(
                        {"log": str(path), "step": r["step"], "cas_public_quick": r["cas_public_quick"]}
                    )
    probe = {}
    gen = (
        Generator.embedded(weights.with_suffix(".safetensors")) if args.cfg_probe or args.hue_probe else None
    )
    if args.cfg_probe:
        clf, _ = public_cas_classifier(run, 0, channels=gen.channels)  # the run's, cached there
        for s in args.cfg_probe:
            probe[f"{s:g}"] = measure_cas(gen, clf, 50, steps=gen.defaults["steps"], cfg=s, seed=777)[0]
    result = {
        "cfg_probe": probe,
        "hue_probe": hue_probe(gen) if args.hue_probe else {},
        "command": "modelmine pretrain --out DIR " + " ".join(f"--set {s}" for s in args.set),
        "cpu": platform.processor() or platform.machine(),
        "config": config,
        "sampling_defaults": gen_json.get("sampling"),
        "provenance": gen_json.get("provenance"),
        "metrics": metrics,
        "total_train_seconds": metrics.get("train_seconds", 0.0) + args.extra_train_seconds,
        "note": args.note,
        "cas_during_training": trajectory,
    }
    out = Path(args.results)
    write_results(out / f"{args.name}.json", result)
    shutil.copyfile(run / "samples.png", out / f"{args.name}_samples.png")
    print(json.dumps({k: metrics[k] for k in ("cas_public", "cas_private", "train_seconds") if k in metrics}))


if __name__ == "__main__":
    main()
