"""CAKE and DeepInversion on the digits, and CAKE's synthesis on a two-moons teacher."""

from __future__ import annotations

from _render import BENCH, Results, bench_methods, f3, machine, para, secs, source, table
from modelmine.papers import PAPERS


def section_cake(r: Results) -> list[str] | None:
    runs = [(n, c) for n in ("cake.json", "cake_2threads.json") if (c := r.get(n))]
    if not runs:
        return None
    cfg = runs[0][1]["config"]
    ck, di, st = cfg["cake"], cfg["deepinversion"], cfg["student"]
    lines = ["## CAKE and DeepInversion", ""]
    if ck.get("downsample") is None:  # written before CAKE's current defaults existed
        lines += para(
            "These runs used CAKE's earlier defaults (full-resolution samples from the digits' pixel",
            "statistics, a `cnn_small` student); the current defaults are measured on both datasets in",
            "[Every method on every built-in dataset](#every-method-on-every-built-in-dataset).",
        )
    lines += para(
        "Both distil the same default teacher into the same student recipe at the same synthesis budget",
        f"({ck['num_batches']} batches x {ck['batch_size']} samples x {ck['num_steps']} steps for CAKE,",
        f"{di['num_batches']} x {di['batch_size']} x {di['num_steps']} for DeepInversion; student",
        f"`{st['preset']}`, {st['epochs']} epochs, KD temperature {st['temperature']:g}). The real-data",
        "student is the same recipe on the real private training images with the teacher's soft labels",
        f"(the upper bound). Seed {ck['seed']}; accuracy on the real test digits.",
        f"Machine: {machine(runs[0][1], threads='')}.",
    )
    lines += para(PAPERS["cake"].claim)
    rows = []
    for name, c in runs:
        a, d, real = c["cake"], c["deepinversion"], c["real_data_student"]
        rows.append(
            [
                f"`results/{name}`",
                c["threads"],
                f3(a["teacher_acc"]),
                f3(a["student_acc"]),
                secs(a["total_seconds_with_teacher_training"]),
                f3(d["student_acc"]),
                secs(d["total_seconds"]),
                f3(real["student_acc"]),
            ]
        )
    header = ["source", "threads", "teacher", "CAKE student", "CAKE time (with teacher)"]
    header += ["DeepInversion student", "DeepInversion time", "real-data student"]
    lines += table(header, rows)
    lines += para(
        "The rows differ only in the torch thread count, which changes the teacher and the synthesis",
        "in floating point; compare results at the same thread count.",
    )
    per = bench_methods(r)
    if (c := per.get("cake")) and (d := per.get("deepinversion")):
        lines += para(
            f"{BENCH}, {c['num_samples']} samples: teacher {f3(c['teacher_acc'])},",
            f"CAKE student {f3(c['student_acc'])}, DeepInversion student {f3(d['student_acc'])}.",
        )
    return lines + source(
        "cake.json",
        "python benchmarks/cake_bench.py --threads 1",
        "; `results/cake_2threads.json` by"
        " `python benchmarks/cake_bench.py --threads 2 --out benchmarks/results/cake_2threads.json`",
    )


def section_moons(r: Results) -> list[str] | None:
    t = r.get("toy_moons.json")
    if t is None:
        return None
    c = t["config"]
    lines = ["## CAKE on two moons", ""]
    lines += para(
        f"CAKE's synthesis on a two-moons MLP teacher (training accuracy {t['teacher_train_acc']:.3f}):",
        f"{c['num_batches']} batches x {c['batch_size']} points, groups of {c['num_groups']},",
        f"{c['num_steps']} steps, TV weight {c['w_tv']:g}, seed {c['seed']}. p is the teacher's",
        "probability of class 1 (|p - 0.5| is 0 on the decision boundary). Machine:",
        f"{machine(t)}.",
    )
    header = ["samples", "on their target class", "median abs(p - 0.5), samples", "same, private data"]
    row = [t["num_samples"], f3(t["sample_target_acc"]), f3(t["sample_median_|p-0.5|"])]
    lines += table(header, [[*row, f3(t["private_data_median_|p-0.5|"])]])
    lines += r.image("toy_moons.png", "CAKE samples on a two-moons teacher's decision boundary")
    return lines + source("toy_moons.json", "python benchmarks/toy_moons.py")
