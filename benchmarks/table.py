"""Print the README's results table from benchmarks/results/*.json (whatever has been measured).

python benchmarks/table.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def main() -> None:
    rows = []
    if t := load("teacher.json"):
        rows.append(("default teacher (digits)", f"test acc {t['teacher_acc_mean']:.3f} (min {t['teacher_acc_min']:.3f}, {len(t['runs'])} seeds)",
                     "-", f"{t['train_seconds_max']:.0f} s train, {t['threads']} thr"))  # fmt: skip
    if d := load("diffusion_pretrain.json"):
        m = d["metrics"]
        rows.append(("embedded generator", f"cas_public {m['cas_public']:.3f}, cas_private {m['cas_private']:.3f}",
                     "target cas_public >= 0.90", f"{m['train_seconds']:.0f} s pretrain, 1 thr"))  # fmt: skip
    if s := load("diffusion_sampler_speed.json"):
        rows.append(("DDIM sampler (batch 64, 30 steps)", f"{s['images_per_second']:.2f} images/s",
                     "overhead < 1.15", f"overhead {s['overhead_ratio']:.3f}, {s['threads']} thr"))  # fmt: skip
    for name in ("cake.json", "cake_2threads.json"):
        if c := load(name):
            thr = c["threads"]
            ck, di, real = c["cake"], c["deepinversion"], c["real_data_student"]
            rows.append((f"CAKE ({ck['num_samples']} samples)", f"student acc {ck['student_acc']:.3f} (teacher {ck['teacher_acc']:.3f})",
                         "paper MNIST 96%; target >= 0.90", f"{ck['total_seconds_with_teacher_training']:.0f} s end to end, {thr} thr"))  # fmt: skip
            rows.append((f"DeepInversion ({di['num_samples']} samples)", f"student acc {di['student_acc']:.3f}", "same budget",
                         f"{di['total_seconds']:.0f} s, {thr} thr"))  # fmt: skip
            rows.append(("student on real private data", f"student acc {real['student_acc']:.3f}", "upper bound",
                         f"{real['student_seconds']:.0f} s, {thr} thr"))  # fmt: skip
    if lira := load("lira_teacher.json"):
        rows.append((f"LiRA on the default teacher ({lira['num_shadows']} shadows)",
                     f"AUC {lira['auc']:.3f}, TPR@1%FPR {lira['tpr_at_1pct_fpr']:.3f}, TPR@0.1%FPR {lira['tpr_at_0.1pct_fpr']:.3f}",
                     f"fixed-variance AUC {lira['online_fixed_auc']:.3f}", f"{lira['wall_seconds']:.0f} s, {lira['threads']} thr"))  # fmt: skip
    for name in ("tckr.json", "tckr_tradeoff.json"):
        if t := load(name):
            m = t["metrics"]
            rows.append((f"TCKR student ({m['cardinality']:g}x synthetic, seed {t['seed']})",
                         f"acc {m['student_acc']:.3f} vs teacher {m['teacher_acc']:.3f}; LiRA AUC {m['student_auc']:.3f} vs {m['teacher_auc']:.3f}",
                         "paper: acc on par, AUC -5.49 pts", f"{t['wall_seconds']:.0f} s end to end, {t['cpu_count']} cores"))  # fmt: skip
            if "student_hard_acc" in m:
                rows.append(("TCKR ablations", f"hard labels {m['student_hard_acc']:.3f}, class-name prompts {m['student_fixed_prompt_acc']:.3f} (AUC {m['student_fixed_prompt_auc']:.3f})",
                             "soft > hard", "same run"))  # fmt: skip
    if d := load("ddis.json"):
        sm, n = d["summary"], d["num_seeds"]
        images = d["config"]["num_images"]

        def ms(stat: dict, fmt: str = ".3f") -> str:
            return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"

        for v, label in (
            ("ddis", "DDIS (DAG + CAT)"),
            ("dag_only", "DDIS ablation: DAG only"),
            ("cat_only", "DDIS ablation: CAT only"),
            ("plain", "plain generator (no DAG, no CAT)"),
        ):
            if v in sm:
                rows.append((f"{label}, {images} images", f"student acc {ms(sm[v]['student_acc'])}, FID {ms(sm[v]['fid'], '.1f')}",
                             "paper: DAG + CAT best", f"mean ± sd over {n} seeds"))  # fmt: skip
        rows.append((f"DeepInversion, {images} images (same teachers)", f"student acc {ms(sm['deepinversion']['student_acc'])}",
                     "DDIS target: above it", f"{sm['ddis_wall_seconds']['mean']:.0f} s per DDIS run, {d['cpu_count']} cores"))  # fmt: skip
    if f := load("finextract.json"):
        m = f["metrics"]
        rows.append((f"FineXtract ({m['num_generations']} generations, N={m['num_train_images']})",
                     f"success {m['success_rate']:.2f}, avg sim {m['avg_similarity']:.3f}; CFG baseline {m['baseline_success_rate']:.2f}, {m['baseline_avg_similarity']:.3f}",
                     "paper ~20%; target 2x baseline", f"{f['wall_seconds']:.0f} s, {f['cpu_count']} cores"))  # fmt: skip
    print("| what | result | reference | cost |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
