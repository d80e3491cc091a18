"""RMIA vs LiRA against the number of reference models, on the default teacher (digits).

    python benchmarks/mia_refs.py [--refs 1 2 4 8 16] [--threads 2] [--work runs/bench-mia-refs]
                                  [--set KEY=VALUE ...]

Runs `modelmine audit membership --shadows max(refs)` in the work folder: the default teacher and
its reference models, each model a file, so a killed run resumes and a later call with more models
trains only the new ones. Then it scores the same target with the first M reference models for each
M in --refs; the masks of the first M models never depend on how many there are, so this is exactly
an audit with M models. Attacks: RMIA online and offline, LiRA online and offline with the fixed
variance; with one model only the offline ones (online needs an IN and an OUT model per example).
Members: the 1,077 private training digits; non-members: the 360 held-out digits.

Writes benchmarks/results/mia_refs.json: per M, AUC and TPR at 1% FPR of each attack; the training
seconds per reference model (mean of those recorded in the model files); whether the M = max(refs)
scores equal the command's own metrics; settings and machine. ``--set`` passes config overrides to
the command (a quick check: ``--refs 1 2 --set teacher.epochs=1 --set teacher.preset=cnn_small``).

Run time with 2 threads on 2 cores: about 40 s per reference model plus the teacher, ~12 min for 16.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _bench import run_cli
from _results import machine_info, write_results
from modelmine.audit import lira, rmia
from modelmine.audit.membership import MembershipConfig
from modelmine.classifiers import load_classifier
from modelmine.config import config_to_dict, load_config
from modelmine.metrics import membership_metrics


def score_with(data: dict, m: int) -> dict[str, torch.Tensor]:
    """Every attack of the benchmark with the first ``m`` reference models (online ones from 2)."""
    keep, refs = data["keep"][:m], data["shadow_logits"][:m]
    lira_scores = lira.score_target(data["target_logits"], data["labels"], refs, keep)
    variants = ("online", "offline") if m >= 2 else ("offline",)
    rmia_scores = rmia.score_target(
        data["target_logits"], data["labels"], refs, keep, ~data["is_member"], data["rmia"], variants
    )
    out = {f"rmia_{k}": v for k, v in rmia_scores.items()}
    out["lira_offline_fixed"] = lira_scores["offline_fixed"]
    if m >= 2:
        out["lira_online_fixed"] = lira_scores["online_fixed"]
    return out


def load_audit(work: Path, num_models: int) -> tuple[MembershipConfig, dict]:
    """The command's config, and its target's and reference models' logits, read back from ``work``."""
    cfg = load_config(MembershipConfig, work / "config.yaml")
    population, is_member = lira.load_population(cfg)
    target, _ = load_classifier(cfg.target or work / "teacher.safetensors", cfg.teacher.preset)
    views = lira.make_views(population.images, cfg.query_flip)
    keep = lira.keep_masks(num_models, is_member, cfg.keep_seed)
    shadows = lira.train_shadows(population, keep, cfg.teacher, work / "shadows", views, progress=False)
    data = {
        "keep": keep, "shadow_logits": shadows, "target_logits": lira.query_views(target, views),
        "labels": population.labels, "is_member": is_member, "rmia": cfg.rmia,
    }  # fmt: skip
    return cfg, data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="runs/bench-mia-refs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mia_refs.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    refs = sorted(set(args.refs))
    if refs[0] < 1:
        raise SystemExit("--refs must be positive")
    work, top = Path(args.work), refs[-1]
    t0 = time.perf_counter()
    attacks = ["lira", "rmia"] if top >= 2 else ["rmia"]
    overrides = [x for kv in args.set for x in ("--set", kv)]
    command = run_cli(
        "audit membership", work, None, "--shadows", str(top), "--attacks", *attacks, *overrides
    )
    cfg, data = load_audit(work, top)
    results = {}
    for m in refs:
        scores = score_with(data, m)
        results[str(m)] = {
            k: v
            for name, sc in scores.items()
            for k, v in membership_metrics(sc, data["is_member"], f"{name}_", (0.01,)).items()
        }
    seconds = lira.shadow_seconds(work / "shadows", top)
    matches = all(command.get(k) == v for k, v in results[str(top)].items() if k in command)
    write_results(
        args.out,
        {
            "refs": refs, "threads": args.threads, "work": str(work), "overrides": args.set,
            "config": config_to_dict(cfg), "num_members": command["num_members"],
            "num_nonmembers": command["num_nonmembers"], "shadow_train_size": command["shadow_train_size"],
            "seconds_per_reference_model": sum(seconds) / len(seconds) if seconds else None,
            "reference_model_seconds": seconds, "matches_command": matches,
            "wall_seconds": time.perf_counter() - t0, "results": results, **machine_info(),
        },
    )  # fmt: skip
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
