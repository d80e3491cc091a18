"""The default teacher per dataset, every method on every dataset, and the faint-background study."""

from __future__ import annotations

from _render import BENCH, Results, bench_methods, f3, machine, n_threads, para, secs, source, table


def teacher_lines(r: Results, name: str) -> list[str]:
    t = r.get(name)
    if t is None:
        return []
    data = t.get("data", "digits")
    size = f", {t['image_size']}x{t['image_size']}" if "image_size" in t else ""
    lines = [f"### {data}", ""]
    lines += para(
        f"The default teacher (preset `{t['preset']}`, {t['epochs']} epochs{size}) trained on the",
        f"{t.get('num_train', 'private')} {data} training images and tested on its test split, once per",
        f"seed. Machine: {machine(t)}.",
    )
    rows = [[run["seed"], f3(run["teacher_acc"]), f"{run['train_seconds']:.0f} s"] for run in t["runs"]]
    lines += table(["seed", "test accuracy", "training time"], rows)
    lines += para(
        f"Mean {t['teacher_acc_mean']:.3f}, minimum {t['teacher_acc_min']:.3f};",
        f"longest training {t['train_seconds_max']:.0f} s.",
        f"Note: {t['note']}." if t.get("note") else "",
    )
    cmd = "python benchmarks/teacher_bench.py --seeds 0 1 2 --threads 2" + (
        f" --data {data}" if data != "digits" else ""
    )
    return lines + source(name, cmd)


def section_teacher(r: Results) -> list[str] | None:
    names = ["teacher.json", *sorted(p.name for p in r.folder.glob("teacher_*.json"))]
    lines = [line for n in names for line in teacher_lines(r, n)]
    if not lines:
        return None
    lines = ["## Teacher", "", *lines]
    if m := bench_methods(r).get("teacher"):
        lines += para(
            f"{BENCH}: test accuracy {m['teacher_acc']:.3f}, training {m['train_seconds']:.0f} s",
            f"on {m['num_train']} images.",
        )
    return lines


# matrix.json runs that predate the DPM-Solver++ default record no sampler
STALE = (
    "Measured with the earlier defaults (DDIM at 30-50 steps, CAKE's BatchNorm start, DDIS's plain ablation"
    ' prompted "a photo of digit <class>"): the speed, TCKR, DDIS and CAKE sections have today\'s.'
)


def section_matrix(r: Results) -> list[str] | None:
    d = r.get("matrix.json")
    if d is None:
        return None
    lines = ["## Every method on every built-in dataset", ""]
    lines += para(
        "Each command with its defaults and `--data <dataset>` (seed 0, one run after the other),",
        f"as a user would run it. Machine: {machine(d, n_threads(d['threads']))}.",
        "Exit status 0 means the command finished; the headline is the method's own metric.",
        f"Note: {d['note']}." if d.get("note") else "",
        "" if d.get("sampler") else STALE,
    )
    rows = []
    for key, run in sorted(d["runs"].items()):
        dataset, method = key.split("/", 1)
        m = run.get("metrics", {})
        metric, what = d["headline"].get(method, ["-", "-"])
        argv = run.get("argv", [])
        changed = ", ".join(argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set") or "defaults"
        changed += "" if "sampler" in run else " (earlier version)"
        rows.append([
            dataset, method, run.get("exit_status", "-"), f3(m.get("teacher_acc")),
            f"{what} {f3(m.get(metric))}" if metric in m else "-", changed, secs(run.get("wall_seconds", 0.0)),
        ])  # fmt: skip
    lines += table(
        ["dataset", "method", "exit", "teacher accuracy", "headline", "settings", "wall time"], rows
    )
    return (
        lines + matrix_targets(d["runs"]) + source("matrix.json", "python benchmarks/matrix.py --threads 2")
    )


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def matrix_targets(runs: dict) -> list[str]:
    """The any-dataset targets per dataset: TCKR within 3 points of its teacher, DDIS at or above its
    DAG-only ablation and the plain generator, FineXtract above CFG on average similarity, CAKE at
    0.90 of its teacher."""
    lines = para(f"{sum(r.get('exit_status') == 0 for r in runs.values())} of {len(runs)} runs finished.")
    rows = []
    for dataset in dict.fromkeys(k.split("/", 1)[0] for k in runs):
        m = {k.split("/", 1)[1]: r.get("metrics", {}) for k, r in runs.items() if k.startswith(dataset + "/")}
        tckr, ddis, ext, cake = (m.get(k, {}) for k in ("tckr", "ddis", "extract", "cake"))
        cells = ["-"] * 4
        if "student_acc" in tckr:
            gap = 100 * (tckr["teacher_acc"] - tckr["student_acc"])
            cells[0] = f"{gap:.1f} points below ({_met(gap <= 3)})"
        if "dag_only_student_acc" in ddis and "plain_student_acc" in ddis:
            s, dag, plain = ddis["student_acc"], ddis["dag_only_student_acc"], ddis["plain_student_acc"]
            cells[1] = f"{f3(s)} vs DAG-only {f3(dag)}, plain {f3(plain)} ({_met(s >= dag and s >= plain)})"
        if "baseline_avg_similarity" in ext:
            a, b = ext["avg_similarity"], ext["baseline_avg_similarity"]
            cells[2] = f"{f3(a)} vs CFG {f3(b)} ({_met(a > b)})"
        if "student_acc" in cake:
            ratio = cake["student_acc"] / cake["teacher_acc"]
            cells[3] = f"{ratio:.3f} of its teacher ({_met(ratio >= 0.9)})"
        rows.append([dataset, *cells])
    header = ["dataset", "TCKR student vs teacher (within 3)", "DDIS student (>= DAG-only and plain)",
              "FineXtract avg. similarity (> CFG)", "CAKE student (0.90 of teacher)"]  # fmt: skip
    mia = [f"{k.split('/')[0]} {f3(r['metrics']['mia_loss_auc'])} / {f3(r['metrics']['mia_pia_auc'])}"
           for k, r in runs.items() if k.endswith("/extract") and "mia_loss_auc" in r.get("metrics", {})]  # fmt: skip
    lines += ["Targets:", ""] + table(header, rows)
    if mia:
        lines += para("`extract`'s membership attacks, its fine-tuning images against the rest of their class",
                      "(AUC of the loss attack / PIA, mean of the modes): " + "; ".join(mia) + ".")  # fmt: skip
    return lines


def section_background_noise(r: Results) -> list[str] | None:
    d = r.get("background_noise.json")
    if d is None:
        return None
    lines = ["## Faint backgrounds and the generator's resolution", ""]
    lines += para(
        "Why generated data failed on mnist5k, and the defaults that mend it. Two teachers of the default",
        "preset and budget: `plain` (shifts only, trained on exactly black backgrounds) and `default`",
        "(faint pixel noise on half of each batch, `teacher.noise`). Their test accuracy on real images,",
        "on the same images passed through the embedded generator's 16x16 resolution, and at 16x16 with",
        "uniform background noise of the given mean (a tiny pixel-space generator leaves some in its",
        "backgrounds; both datasets have black ones). In brackets: the share of images given the most",
        "frequent class. `tckr synthetic`: agreement with a TCKR run's generated images' prompted class.",
        f"Machine: {machine(d)}.",
    )
    levels = [str(x) for x in d["levels"]]
    rows, students = [], []
    for data, e in d["datasets"].items():
        for name, t in e["teachers"].items():
            cells = [
                f"{f3(t['at_16'][lv]['acc'])} ({t['at_16'][lv]['top_class_share']:.2f})" for lv in levels
            ]
            syn = t.get("tckr_synthetic")
            syn_cell = f"{f3(syn['acc'])} ({syn['top_class_share']:.2f})" if syn else "-"
            rows.append([data, name, f3(t["real"]["acc"]), *cells, syn_cell])
        if s := e.get("students"):
            students.append(
                f"{data}: a student trained on the TCKR images' prompted classes reads the real test digits at "
                f"{f3(s['generator_size']['acc'])} when it learns at the generator's "
                f"{s['generator_size']['image_size']}x{s['generator_size']['image_size']} (the derived "
                f"`student.image_size`), {f3(s['teacher_size']['acc'])} when the images are upsampled to the "
                f"teacher's {s['teacher_size']['image_size']}x{s['teacher_size']['image_size']}; the generated "
                f"images' median pixel is {e['median_pixel']:.3f}."
            )
    lines += table(
        ["dataset", "teacher", "real", *[f"16x16 + {lv}" for lv in levels], "tckr synthetic"], rows
    )
    for line in students:
        lines += para(line)
    return lines + source(
        "background_noise.json", "python benchmarks/background_noise.py --synthetic mnist5k=TCKR_RUN"
    )
