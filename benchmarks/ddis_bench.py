"""DDIS on the embedded default, with its ablations and DeepInversion at the same number of images,
over several seeds.

For every seed: ``modelmine ddis`` with its defaults (DDIS = DAG + CAT, plus plain / DAG-only /
CAT-only generations, each distilled into the same student recipe), then ``modelmine
deepinversion`` on the same teacher with as many images (its default batch size, ``num_images /
batch_size`` batches), both in this process (``_bench.run_cli``; ``--set`` goes to DDIS, the seed
to DDIS's ``seed`` and ``teacher.seed`` and DeepInversion's ``seed``). The seed changes everything
a run draws: the teacher's initial weights, the generator's start noise, the CAT batches and the
students. One seed is not enough to compare the variants (their students move by several points
between seeds), so the summary gives the mean and the standard deviation over seeds, and the
targets are judged on the means.

Writes ``benchmarks/results/<name>.json`` (per-seed metrics, summary, targets) and copies the
first seed's sample grids. A finished seed is kept in ``<work>/seed<k>/result.json`` and not run
again (delete ``--work`` to start over). Usage::

    python benchmarks/ddis_bench.py [--seeds 0 1 2] [--work /tmp/ddis_bench] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from _bench import config, run_cli
from _results import machine_info, seed_stats, write_results
from modelmine.config import merge_dicts, parse_set
from modelmine.methods import ddis

RESULTS = Path(__file__).parent / "results"
KEYS = ("student_acc", "fid", "precision", "recall", "inception_score", "teacher_acc_on_synthetic")


def ddis_overrides(sets: dict, seed: int) -> dict:
    """The ``modelmine ddis`` overrides of one seed: ``--set`` (nested, as parsed), then the seed."""
    return merge_dicts(sets, {"seed": seed, "teacher": {"seed": seed}})


def deepinversion_overrides(num_images: int, seed: int) -> dict:
    """DeepInversion with as many images as DDIS (its default batch size) and the same seed."""
    batch_size = config("deepinversion").batch_size
    return {"seed": seed, "num_batches": max(1, round(num_images / batch_size))}


def run_seed(sets: dict, seed: int, work: Path) -> dict:
    done = work / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(work, ignore_errors=True)
    overrides = ddis_overrides(sets, seed)
    t0 = time.time()
    metrics = run_cli("ddis", work / "ddis", overrides)
    ddis_wall = time.time() - t0

    (work / "deepinversion").mkdir(parents=True)
    shutil.copy(work / "ddis" / "teacher.safetensors", work / "deepinversion" / "teacher.safetensors")
    di_overrides = deepinversion_overrides(config("ddis", overrides).num_images, seed)
    torch.set_num_threads(2)
    t0 = time.time()
    di = run_cli("deepinversion", work / "deepinversion", di_overrides)
    result = {
        "seed": seed,
        "ddis": metrics,
        "ddis_wall_seconds": ddis_wall,
        "deepinversion": di,
        "deepinversion_wall_seconds": time.time() - t0,
    }
    write_results(done, result)
    return result


def summarize(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every variant's metrics, and the targets."""

    def stats(values: list[float]) -> dict:
        return {**seed_stats(values), "values": values}

    summary: dict = {}
    for v in ddis.VARIANTS:
        p = "" if v == "ddis" else ddis.VARIANTS[v].prefix
        if all(f"{p}student_acc" in r["ddis"] for r in runs):
            summary[v] = {
                k: stats([r["ddis"][f"{p}{k}"] for r in runs]) for k in KEYS if f"{p}{k}" in runs[0]["ddis"]
            }
    summary["deepinversion"] = {"student_acc": stats([r["deepinversion"]["student_acc"] for r in runs])}
    summary["teacher_acc"] = stats([r["ddis"]["teacher_acc"] for r in runs])
    summary["ddis_wall_seconds"] = stats([r["ddis_wall_seconds"] for r in runs])
    acc = {v: summary[v]["student_acc"]["mean"] for v in summary if v in ddis.VARIANTS}
    acc["deepinversion"] = summary["deepinversion"]["student_acc"]["mean"]
    targets = {"ddis_wall_under_20_min": max(r["ddis_wall_seconds"] for r in runs) < 20 * 60}
    if "plain" in acc:
        targets["student_above_plain"] = acc["ddis"] > acc["plain"]
        targets["fid_below_plain"] = summary["ddis"]["fid"]["mean"] < summary["plain"]["fid"]["mean"]
    targets["student_above_deepinversion"] = acc["ddis"] > acc["deepinversion"]
    wins = {
        "student_above_plain": sum(
            r["ddis"]["student_acc"] > r["ddis"].get("plain_student_acc", 1) for r in runs
        ),
        "student_above_deepinversion": sum(
            r["ddis"]["student_acc"] > r["deepinversion"]["student_acc"] for r in runs
        ),
        "fid_below_plain": sum(r["ddis"]["fid"] < r["ddis"].get("plain_fid", 0) for r in runs),
    }
    return {"summary": summary, "targets_on_means": targets, "seeds_won": wins, "num_seeds": len(runs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default="/tmp/ddis_bench")
    ap.add_argument(
        "--name", default="ddis_keep_best", help="results/<name>.json (ddis_keep_best: today's defaults)"
    )
    ap.add_argument("--set", nargs="*", default=[], help="DDIS config overrides key=value")
    args = ap.parse_args()
    sets = parse_set(args.set)
    cfg = config("ddis", sets)
    work = Path(args.work)
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(sets, seed, work / f"seed{seed}"))
        print(json.dumps(summarize(runs)["summary"]["ddis"]["student_acc"]), flush=True)
    results = {
        **summarize(runs),
        "runs": runs,
        "config": asdict(cfg) | {"seed": args.seeds},
        **machine_info(),
    }
    write_results(RESULTS / f"{args.name}.json", results)
    first = work / f"seed{args.seeds[0]}" / "ddis"
    for v in ddis.VARIANTS:
        if (first / f"grid_{v}.png").exists():
            shutil.copy(first / f"grid_{v}.png", RESULTS / f"{args.name}_grid_{v}.png")
    print(json.dumps({k: results[k] for k in ("summary", "targets_on_means", "seeds_won")}, indent=2))


if __name__ == "__main__":
    main()
