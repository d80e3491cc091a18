"""FineXtract vs the CFG baseline over seeds and datasets, LoRA and full fine-tuning.

Runs ``modelmine extract`` in this process (``_bench.run_cli``) once per (dataset, seed): the
embedded generator fine-tuned on the first N = 10 training images of class 3 of the built-in
dataset (``digits``, ``mnist5k``) with LoRA and fully, then FineXtract and CFG at the official
baseline scale (3.0) from the same start noise, clustered and scored the same way. Every setting
not given here is the command's default (fine-tuning steps derived per image).

Budget: the command's defaults, the paper's 500 generations per method and model with the default
sampler (``--num-generations`` and ``--sample-steps`` override them), and only the official
baseline; the JSON records these settings under ``budget``.

Resumable: each finished run's metrics go into the results JSON at once (``runs``), and a re-run
with the same settings skips the runs it holds (a killed run resumes inside its ``--work`` folder).
``--fresh`` starts over. Writes ``<name>.json`` (per-run metrics, per-dataset mean / std / min / max
over seeds, the targets) and ``<name>_matches_<dataset>.png`` (seed ``seeds[0]``). Usage::

    python benchmarks/finextract_bench.py                     # -> results/finextract.json
    python benchmarks/finextract_bench.py --quick --results /tmp/fx_results   # smoke test, ~1 min
    python benchmarks/finextract_bench.py --prompt-auto --name finextract_prompt_auto   # + --prompt auto
    python benchmarks/finextract_bench.py --prompt-auto --prompt-score response --name finextract_prompt_response
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from _bench import config, run_cli
from _results import machine_info, seed_stats, write_results
from modelmine.audit.prompt import SCORES
from modelmine.methods import finextract

RESULTS = Path(__file__).parent / "results"
METRICS = ("success_rate", "calibrated_success_rate", "avg_similarity")
METHODS = {"finextract": "", "baseline": "baseline_"}  # name -> metric prefix


def overrides(args, data: str, seed: int) -> dict:
    """The ``modelmine extract`` config overrides of one (dataset, seed) run."""
    out = {
        "data": data, "seed": seed, "extra_baseline_cfgs": list(args.extra_cfg), "workers": args.workers,
        "identifier": args.identifier, "num_train_images": args.num_train_images,
    }  # fmt: skip
    for key in ("num_generations", "sample_steps", "sampler"):  # None: the command's default
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    if args.prompt_auto:
        out["prompt"] = finextract.AUTO
        if args.prompt_score is not None:
            out["prompt_search.score"] = args.prompt_score
    if args.quick:
        out |= {"num_generations": 12, "gen_batch_size": 6, "sample_steps": 3}
        out |= {"lora.steps": 3, "full.steps": 3, "prompt_search.max_words": 2, "prompt_search.num_noise": 2}
    return out


def summarize(runs: dict[str, dict], datasets: list[str], modes: list[str]) -> dict:
    """Per dataset: mean, std, min, max over seeds of every ``<mode>_<prefix><metric>`` key."""
    out = {}
    for data in datasets:
        ms = [r["metrics"] for key, r in runs.items() if key.split("/")[0] == data]
        if not ms:
            continue
        stats = {}
        for key in ms[0]:
            vals = [m[key] for m in ms if isinstance(m.get(key), int | float)]
            if len(vals) == len(ms):
                stats[key] = {**seed_stats(vals), "min": min(vals), "max": max(vals)}
        out[data] = {"seeds": len(ms), "stats": stats}
    return out


def targets(summary: dict, modes: list[str]) -> dict:
    """The issue's targets per dataset and mode, on the means over seeds."""
    out = {}
    for data, s in summary.items():
        st = s["stats"]
        for mode in modes:
            mean = {k: v["mean"] for k, v in st.items()}
            fx, base = mean.get(f"{mode}_success_rate"), mean.get(f"{mode}_baseline_success_rate")
            row = {
                "avg_similarity_above_baseline": mean[f"{mode}_avg_similarity"]
                > mean[f"{mode}_baseline_avg_similarity"],
                "success_rate_2x_baseline": None if not base else fx >= 2 * base,
            }
            rec, true = mean.get(f"{mode}_recovered_success_rate"), mean.get(f"{mode}_success_rate")
            if rec is not None and true:
                row["recovered_prompt_two_thirds"] = rec >= 2 / 3 * true
            out[f"{data}/{mode}"] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    ap.add_argument("--num-generations", type=int, default=None, help="default: the command's (500)")
    ap.add_argument("--sample-steps", type=int, default=None, help="default: the command's")
    ap.add_argument("--sampler", default=None, help="ddim or dpmpp_2m; default: the command's")
    ap.add_argument("--num-train-images", type=int, default=10)
    ap.add_argument("--extra-cfg", type=float, nargs="*", default=[])
    ap.add_argument("--identifier", default=None, help="DreamBooth identifier, e.g. sks")
    ap.add_argument("--prompt-auto", action="store_true", help="also recover the prompt (--prompt auto)")
    ap.add_argument(
        "--prompt-score",
        default=None,
        choices=SCORES,
        help="the search score (default: the command's)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    ap.add_argument("--fresh", action="store_true", help="forget finished runs and start over")
    ap.add_argument("--name", default=None)
    ap.add_argument("--work", default="/tmp/finextract_bench")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    name = args.name or ("finextract_quick" if args.quick else "finextract")
    out, work = Path(args.results), Path(args.work) / name
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    settings = {k: v for k, v in vars(args).items() if k not in ("seeds", "datasets", "fresh", "workers")}
    settings = settings | {"results": None, "work": None, "name": None}
    old = json.loads(path.read_text()) if path.exists() and not args.fresh else {}
    runs = old.get("runs", {}) if old.get("settings") == settings else {}
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    modes = finextract.ExtractConfig().modes
    recorded = None  # the last run's resolved config
    for data in args.datasets:
        for seed in args.seeds:
            cfg = config("extract", overrides(args, data, seed))
            recorded = asdict(cfg)
            key = f"{data}/{seed}"
            folder = work / f"{data}_seed{seed}"
            if key in runs:
                print(f"{key}: done, skipped")
                if "prompts" in runs[key] or not (folder / "prompt.json").exists():
                    continue
            else:
                t0 = time.time()
                metrics = run_cli("extract", folder, overrides(args, data, seed))
                runs[key] = {"metrics": metrics, "wall_seconds": time.time() - t0}
                if seed == args.seeds[0]:
                    shutil.copy(folder / "matches.png", out / f"{name}_matches_{data}.png")
            if (folder / "prompt.json").exists():  # --prompt-auto: the recovered prompt per mode
                runs[key]["prompts"] = json.loads((folder / "prompt.json").read_text())
            summary = summarize(runs, args.datasets, modes)
            done = all(f"{d}/{s}" in runs for d in args.datasets for s in args.seeds)
            results = {
                "settings": settings,
                "budget": {
                    "num_generations": cfg.num_generations,
                    "sample_steps": cfg.sample_steps,
                    "baselines": [cfg.baseline_cfg, *cfg.extra_baseline_cfgs],
                    "workers": args.workers,
                    "expected_minutes_2_cores": "30-40 for 2 datasets x 3 seeds",
                },  # fmt: skip
                "seeds": args.seeds,
                "datasets": args.datasets,
                "modes": modes,
                "complete": done,
                "runs": runs,
                "summary": summary,
                "targets": targets(summary, modes),
                "wall_seconds": sum(r["wall_seconds"] for r in runs.values()),
                "quick": args.quick,
                "config": recorded,
                **machine_info(),
            }
            write_results(path, results)
            print(f"{key}: {runs[key]['wall_seconds']:.0f} s; written to {path}")
    if old and runs and recorded is None:
        print("nothing to run")
    final = json.loads(path.read_text())
    print(json.dumps({"targets": final["targets"], "wall_seconds": final["wall_seconds"]}, indent=2))


if __name__ == "__main__":
    main()
