"""TCKR end to end: accuracy and LiRA of teacher and students, at one or several cardinalities."""

from __future__ import annotations

from _render import BENCH, Results, bench_methods, f3, machine, para, pts, secs, source, table, workers
from modelmine.papers import PAPERS

TCKR_MODELS = [
    ("teacher (real data)", "teacher"),
    ("TCKR student (soft labels)", "student"),
    ("hard-label student", "student_hard"),
    ("fixed-prompt student", "student_fixed_prompt"),
]
TCKR_HEADER = ["model", "test accuracy", "LiRA AUC", "TPR at 1% FPR", "TPR at 0.1% FPR", "AUC (paper's rule)",
               "AOP"]  # fmt: skip


def tckr_rows(m: dict) -> list[list[str]]:
    keys = ("acc", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "auc_paper", "aop")
    return [[label, *(f3(m.get(f"{k}_{x}")) for x in keys)] for label, k in TCKR_MODELS if f"{k}_acc" in m]


def section_tckr(r: Results) -> list[str] | None:
    runs = [(n, t) for n in ("tckr.json", "tckr_tradeoff.json") if (t := r.get(n))]
    if not runs:
        return None
    lines = ["## TCKR", ""]
    for name, t in runs:
        m, c = t["metrics"], t["config"]
        cards = ", ".join(f"{x:g}" for x in c["cardinality"])
        lines += [f"### `results/{name}`", ""]
        lines += para(
            f"TCKR end to end on the embedded default, seed {t['seed']}: {m['num_private']} private",
            f"training images captioned by `{c['captioner']}`, a rank-{c['lora']['rank']} LoRA",
            f"({c['lora']['steps']} steps) on the {c['generator']} generator, {m['num_synthetic']} synthetic",
            f"images at cardinality {cards} ({c['sample_steps']} steps of {c.get('sampler', 'ddim')}), LiRA with"
            f" {m['num_shadows']}",
            "shadow models (online; members: the private training images, non-members: held-out images).",
            "Accuracy on the real test digits.",
            (
                f"Shadows trained on {m['shadow_train_size']} images each (the target's training-set size);"
                " headline AUC with the fixed variance below 64 shadows; students by the paper's generative KD."
                if "shadow_train_size" in m
                else "Measured with the earlier defaults: shadows on half the population, per-example"
                " variance, KL-at-T=4 students."
            ),
            f"Machine: {machine(t, workers(c))}.",
        )
        lines += table(TCKR_HEADER, tckr_rows(m))
        xs = sorted({k.split("_")[1] for k in m if k.startswith("student_x") and k.endswith("_acc")})
        if len(xs) > 1:
            rows = [[x[1:], f3(m[f"student_{x}_acc"]), f3(m[f"student_{x}_auc"])] for x in xs]
            lines += table(["cardinality", "student accuracy", "student AUC"], rows)
        paper_rule = (
            " By the paper's rule (the best of our four LiRA variants, on the held-out non-members and as many"
            f" members drawn at random): {pts(m['student_auc_paper'], m['teacher_auc_paper'])} points, the"
            " quantity of the paper's claim."
            if "student_auc_paper" in m
            else ""
        )
        lines += para(
            f"Student minus teacher: accuracy {pts(m['student_acc'], m['teacher_acc'])} points,",
            f"LiRA AUC {pts(m['student_auc'], m['teacher_auc'])} points (one variant, every private image).{paper_rule}",
            PAPERS["tckr"].claim,
        )
        lines += para(
            f"The teacher agrees with the synthetic images' class on {m['synthetic_teacher_agreement']:.3f}",
            f"of them ({m['fixed_prompt_teacher_agreement']:.3f} with class-name prompts).",
            f"Time: LoRA {secs(m['lora_seconds'])} and generation {secs(m['generation_seconds'])} per",
            f"chain; phase 1 {secs(m['phase1_seconds'])}, phase 2 {secs(m['phase2_seconds'])};",
            f"whole run {secs(t['wall_seconds'])}.",
        )
        lines += r.image(f"{name[:-5]}_samples.png", "TCKR synthetic samples")
        lines += r.image(f"{name[:-5]}_tradeoff.png", "student accuracy vs LiRA AUC")
    if m := bench_methods(r).get("tckr"):
        lines += para(f"{BENCH}:") + table(TCKR_HEADER, tckr_rows(m))
    return lines + source(
        "tckr.json",
        "python benchmarks/tckr_bench.py",
        "; the accuracy-vs-AUC curve over several cardinalities by"
        " `python benchmarks/tckr_bench.py --cardinality 0.5 1 2 4 --name tckr_tradeoff`",
    )
