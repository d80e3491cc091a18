"""DDIS and its ablations over seeds, at each form of DAG measured."""

from __future__ import annotations

from _render import (
    BENCH,
    Results,
    bench_methods,
    f3,
    machine,
    mean_sd,
    n_threads,
    para,
    pts,
    source,
    table,
    workers,
)
from modelmine.papers import PAPERS

DDIS_VARIANTS = [
    ("ddis", "DDIS (DAG + CAT)"),
    ("dag_only", "DAG only"),
    ("cat_only", "CAT only"),
    ("plain", "plain generator"),
]


def dag_setting(c: dict) -> str:
    """DAG's form and strength in a DDIS config; results from before ``dag_input`` used the x0_hat form
    (``dag_form="x_t"`` was the paper's, with ``dag_scale`` as its raw step)."""
    dag_input = c.get("dag_input") or ("x_t" if c.get("dag_form") == "x_t" else "x0_hat")
    if dag_input == "x_t" and "dag_step" in c:
        return f"DAG on x_t, step {c['dag_step']:g} x the training-timestep noise gap"
    if dag_input == "x_t":
        return f"DAG on x_t, raw step {c['dag_scale']:g}"
    return f"DAG on x0_hat, scale {c['dag_scale']:g}"


DDIS_RUNS = [  # (results file, heading): the current defaults first
    ("ddis_keep_best.json", "DAG on x_t (the paper's form), today's defaults"),
    ("ddis_xt.json", "The same with `cat_keep=start` (unaccepted class tokens back to their start)"),
    (
        "ddis_dpmpp.json",
        "DPM-Solver++(2M) at 10 steps (not the default), with the metrics on held-out real images",
    ),
    (
        "ddis_squared.json",
        "DAG with the paper's squared L_BN norms (`dag_norm=squared_l2`), at 10 DPM-Solver++ steps",
    ),
    (
        "ddis.json",
        "DAG on x0_hat (the earlier default; CAT tokens from the class name, last DeepInversion iterate)",
    ),
]


def section_ddis(r: Results) -> list[str] | None:
    lines = [
        line for name, title in DDIS_RUNS if (d := r.get(name)) for line in ddis_block(r, name, d, title)
    ]
    return ["## DDIS", "", *lines] if lines else None


def ddis_block(r: Results, name: str, d: dict, title: str) -> list[str]:
    sm, c, runs = d["summary"], d["config"], d["runs"]
    seeds = [run["seed"] for run in runs]
    variants = [(k, label) for k, label in DDIS_VARIANTS if k in sm]
    names = dict(variants) | {"deepinversion": "DeepInversion"}
    lines = [f"### {title}", ""]
    lines += para(
        f"DDIS and its ablations on the embedded default, seeds {', '.join(map(str, seeds))} (the seed",
        "changes the teacher's initial weights, the start noise, the CAT batches and the students).",
        f"Each variant generates {c['num_images']} images ({c['sample_steps']} steps of {c.get('sampler', 'ddim')},"
        f" {dag_setting(c)};",
        "CAT tokens trained",
        "on DAG-guided samples" if c.get("cat_with_dag") else "without DAG",
        f"for up to {c['cat_iters']} iterations, until {c['cat_stop_acc']:.0%} of a class's batch is",
        "classified as the class),",
        f"distilled into the same `{c['student']['preset']}` student; DeepInversion distils the same",
        f"teacher (`{c['teacher']['preset']}`) from as many images. Machine: {machine(d, workers(c))}.",
    )
    lines += para(PAPERS["ddis"].claim) + ["Student accuracy on the real test digits:", ""]
    rows = [
        [label, *map(f3, sm[k]["student_acc"]["values"]), mean_sd(sm[k]["student_acc"])]
        for k, label in variants
    ]
    if "deepinversion" in sm:
        di = sm["deepinversion"]["student_acc"]
        rows.append(["DeepInversion", *map(f3, di["values"]), mean_sd(di)])
    lines += table(["variant", *[f"seed {s}" for s in seeds], "mean ± sd"], rows)
    halves = "inception_score" in sm["ddis"]  # the metric classifier fitted to half the real images
    lines += para(
        "FID, precision and recall use the penultimate features of a separate",
        f"`{c['feature_preset']}` classifier (not the teacher)",
        "fitted to one half of the real images and compared with the other half; IS is the Inception Score"
        " formula on its logits;"
        if halves
        else "trained on the same private images it compares with;",
        '"teacher agrees" is the teacher\'s accuracy on the synthetic images against their prompted class.',
        "Precision, recall, IS and agreement are means over the seeds.",
    )
    rows = []
    extra = ("precision", "recall", "inception_score") if halves else ("precision", "recall")
    for k, label in variants:
        v = sm[k]
        fids = [f"{x:.1f}" for x in v["fid"]["values"]]
        means = [f3(v[x]["mean"]) for x in (*extra, "teacher_acc_on_synthetic")]
        rows.append([label, *fids, mean_sd(v["fid"], ".1f"), *means])
    header = ["variant", *[f"FID seed {s}" for s in seeds], "FID mean ± sd", "precision", "recall"]
    lines += table([*header, *(["IS"] if halves else []), "teacher agrees"], rows)
    pairs = [("ddis", "plain"), ("dag_only", "plain"), ("cat_only", "plain"), ("ddis", "dag_only")]
    pairs.append(("ddis", "deepinversion"))
    rows = []
    for a, b in pairs:
        if a in sm and b in sm:
            va, vb = sm[a]["student_acc"]["values"], sm[b]["student_acc"]["values"]
            rows.append([f"{names[a]} - {names[b]}", *(pts(x, y) for x, y in zip(va, vb, strict=True))])
    lines += ["Student accuracy differences, in points:", ""]
    lines += table(["", *[f"seed {s}" for s in seeds]], rows)
    wall = sm["ddis_wall_seconds"]
    lines += para(
        f"Teacher test accuracy {mean_sd(sm['teacher_acc'])}. One `ddis` run (teacher, CAT tokens, four",
        f"variants and their students) took {min(wall['values']):.0f}-{max(wall['values']):.0f} s,",
        f"mean {wall['mean']:.0f} s.",
    )
    if name == "ddis.json" and (m := bench_methods(r).get("ddis")):
        rows = []
        for k, label in variants:
            p = "" if k == "ddis" else f"{k}_"
            rows.append([label, f3(m[f"{p}student_acc"]), f"{m[f'{p}fid']:.1f}"])
        lines += para(f"{BENCH}:") + table(["variant", "student accuracy", "FID"], rows)
    for k, label in variants:
        lines += r.image(f"{name[:-5]}_grid_{k}.png", f"{label} samples, seed {seeds[0]}")
    return lines + source(
        name,
        f"python benchmarks/ddis_bench.py --seeds {' '.join(map(str, seeds))} --name {name[:-5]}"
        + {
            "ddis_keep_best.json": " --set cat_keep=best",
            "ddis_xt.json": " --set cat_keep=start",
            "ddis_dpmpp.json": " --set sampler=dpmpp_2m sample_steps=10",
            "ddis_squared.json": " --set sampler=dpmpp_2m sample_steps=10 dag_norm=squared_l2",
        }.get(name, " --set dag_input=x0_hat"),
        "; a finished seed is kept in its `--work` folder and not run again",
    )


KEEP_LABELS = {
    "start": "`cat_keep=start`: unaccepted tokens back to their start",
    "best": "`cat_keep=best` (official, the default): lowest-loss token",
    "last": "`cat_keep=last`: last update",
    "dag_only": "DAG only (`cat=false`)",
}


def section_ddis_cat_keep(r: Results) -> list[str] | None:
    d = r.get("ddis_cat_keep.json")
    if d is None:
        return None
    lines = ["## DDIS: class tokens that never reach their class", ""]
    lines += para(
        "`modelmine ddis --set ablations=false` per dataset, once per `cat_keep` and once with DAG only,",
        "same seed, noise and targets: the runs differ by the CAT tokens alone. A class stops when 70% of",
        "its batch is classified as it; the others keep what `cat_keep` says.",
        f"Machine: {machine(d, n_threads(d['threads']))}.",
    )
    rows = []
    for key, run in d["runs"].items():
        dataset, variant = key.split("/", 1)
        m = run.get("metrics", {})
        rows.append([dataset, KEEP_LABELS.get(variant, variant), f3(m.get("student_acc")),
                     str(m.get("cat_classes_stopped", "-")), f3(m.get("fid")), f3(m.get("recall"))])  # fmt: skip
    lines += table(["dataset", "tokens", "student accuracy", "classes stopped", "FID", "recall"], rows)
    return lines + source("ddis_cat_keep.json", "python benchmarks/ddis_cat_keep.py")
