"""Write benchmarks/RESULTS.md from the JSON files in benchmarks/results/.

Every number in RESULTS.md is read from a JSON file that a benchmark script (or a ``modelmine
bench`` run) wrote; this script only formats them, one section per source. Besides formatting it
holds the papers' reference numbers (citations, not our measurements). A JSON file that no section
reads is listed at the end, so a new result is never dropped silently. Usage::

    python benchmarks/table.py            # rewrite benchmarks/RESULTS.md
    python benchmarks/table.py --check    # exit 1 if RESULTS.md differs from what the JSONs give
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
OUT = HERE / "RESULTS.md"

# The papers' own headline numbers (other data, models and budgets): for orientation only.
PAPER = {
    "cake": "CAKE (Braun et al., AISTATS 2024, arXiv:2306.02090) reports 96% student accuracy on MNIST "
    "from 256,000 synthetic samples.",
    "tckr": "TCKR (Resmini et al., 2025, arXiv:2504.04582) reports students on par with their teachers "
    "and a LiRA AUC 5.49 points lower on average.",
    "ddis": "DDIS (arXiv:2506.15381) reports DAG + CAT as the best variant of its ablation.",
    "extract": "FineXtract (Wu et al., 2024, arXiv:2410.03039) reports about 20% of the fine-tuning images "
    "extracted from Stable Diffusion, above the CFG baseline.",
}
PAPER_SHORT = {  # the same, for the bench table's column
    "cake": "96% on MNIST (256k samples)",
    "tckr": "acc on par with teacher; AUC -5.49 pts",
    "ddis": "DAG + CAT best in the ablation",
    "extract": "about 20% extracted, above CFG",
}
# Results measured before the default teacher recipe gained faint pixel noise (``teacher.noise``):
# their teachers, students and reference models were trained with shifts only. A file leaves this
# set when its script is run again.
EARLIER_TEACHER = {
    "bench.json", "cake.json", "cake_2threads.json", "tckr.json", "tckr_tradeoff.json", "ddis.json",
    "mia_refs.json",
}  # fmt: skip
EARLIER_NOTE = (
    "Measured with the earlier default teacher recipe (shifts only; `--set teacher.noise=0` today): {files}. "
    "The [matrix](#every-method-on-every-built-in-dataset) has every method with the current defaults."
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class Results:
    """The JSON files of benchmarks/results/, and which of them a section has read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()

    def get(self, name: str) -> dict | None:
        p = self.folder / name
        if not p.exists():
            return None
        self.used.add(name)
        return json.loads(p.read_text())

    def image(self, name: str, alt: str) -> list[str]:
        """A markdown image of results/<name>, if the file exists."""
        return [f"![{alt}](results/{name})", ""] if (self.folder / name).exists() else []

    def unused(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*.json") if p.name not in self.used)


# --- formatting ---------------------------------------------------------------------------------


def para(*parts: str) -> list[str]:
    """One markdown paragraph (one line) from sentence fragments."""
    return [" ".join(p for p in parts if p), ""]


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def pts(a: float, b: float) -> str:
    """a - b in percentage points, signed."""
    return f"{100 * (a - b):+.1f}"


def secs(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s:.0f} s ({s / 60:.1f} min)"


def mean_sd(stat: dict, fmt: str = ".3f") -> str:
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"


def n_threads(n: int) -> str:
    return f"{n} torch thread{'s' if n != 1 else ''}"


def machine(d: dict, threads: str | None = None) -> str:
    """The machine a JSON records, in words (whichever of those keys its script wrote)."""
    parts = []
    if "cpu_count" in d:
        parts.append(f"{d['cpu_count']} CPU cores")
    if arch := d.get("machine") or d.get("cpu"):
        parts.append(str(arch))
    if "torch" in d:
        parts.append(f"torch {d['torch']}")
    if threads is None and "threads" in d:
        threads = n_threads(d["threads"])
    if threads:
        parts.append(threads)
    return ", ".join(parts) if parts else "not recorded in the JSON"


def workers(cfg: dict) -> str:
    return f"{cfg['workers']} worker processes x {n_threads(cfg['threads'])} each"


def source(json_name: str, command: str, note: str = "") -> list[str]:
    return para(f"Source: `results/{json_name}`, written by `{command}`{note}.")


def bench_methods(r: Results) -> dict[str, dict]:
    """bench.json's flat ``<method>_<metric>`` keys, split back per method ({} without bench.json)."""
    b = r.get("bench.json")
    if b is None:
        return {}
    out = {}
    for name in b["wall_seconds"]:
        prefix = name.replace(" ", "_") + "_"
        out[name] = {k[len(prefix) :]: v for k, v in b["metrics"].items() if k.startswith(prefix)}
    if "extract" in out:
        out["extract"] = extraction_keys(out["extract"])
    return out


def extraction_keys(m: dict) -> dict:
    """FineXtract / audit generator metrics under today's names. Results from before the paper's
    fixed-threshold ``success_rate`` existed hold the non-member-calibrated rate under that name (and
    its threshold as ``success_threshold``): those become ``*calibrated_success_rate`` and
    ``calibrated_threshold``."""
    if "success_threshold" not in m or "calibrated_threshold" in m:
        return m
    renamed = {}
    for k, v in m.items():
        if k.endswith("success_rate"):
            k = k[: -len("success_rate")] + "calibrated_success_rate"
        renamed["calibrated_threshold" if k == "success_threshold" else k] = v
    return renamed


def extraction_rate(m: dict, prefix: str = "") -> str:
    """``prefix``'s success rate at the fixed threshold, then the calibrated one: "0.40 / 0.10"
    ("-" for a rate the results do not hold)."""
    rates = [m.get(f"{prefix}success_rate"), m.get(f"{prefix}calibrated_success_rate")]
    return " / ".join("-" if x is None else f"{x:.2f}" for x in rates)


BENCH = "`modelmine bench` (the command's defaults: seed 0, default thread settings)"


# --- sections, one per source -------------------------------------------------------------------


def section_bench(r: Results) -> list[str] | None:
    b = r.get("bench.json")
    if b is None:
        return None
    per = bench_methods(r)
    rows = []
    for name, m in per.items():
        acc = m.get("student_acc", m.get("teacher_acc"))
        if "calibrated_success_rate" in m:  # extract (bench_methods maps older key names)
            leak = f"extraction {extraction_rate(m)} (CFG {extraction_rate(m, 'baseline_')})"
        elif "student_auc" in m:
            leak = f"AUC {m['student_auc']:.3f} (teacher {m['teacher_auc']:.3f})"
        elif "auc" in m:
            leak = f"AUC {m['auc']:.3f}"
        else:
            leak = "-"
        n = m.get("num_samples", m.get("num_synthetic", m.get("num_images")))
        syn = m.get("synthesis_seconds", m.get("generation_seconds"))
        speed = f"{n / syn:.1f}" if n and syn else "-"
        wall = f"{b['wall_seconds'][name] / 60:.1f} min"
        rows.append([name, f3(acc), leak, speed, wall, PAPER_SHORT.get(name, "-")])
    commit = f"Code at commit {b['commit']}." if "commit" in b else ""
    lines = ["## modelmine bench", ""]
    lines += para(
        f"`{b['command']}` runs every method through its own command with that command's default config",
        "(default seed 0), one after the other, with torch's default thread count unless a command sets",
        f"its own. Machine: {b['machine']}. Total wall time {sum(b['wall_seconds'].values()) / 60:.0f} min.",
        commit,
    )
    lines += para(
        "Accuracy is the student's (the teacher's for `teacher`) on the real test digits; images/s is",
        "synthetic images over synthesis time; the paper column is the paper's own headline number.",
    )
    lines += table(["method", "accuracy", "AUC / extraction", "images/s", "wall time", "paper"], rows)
    if m := per.get("extract"):
        lines += para(
            "The extraction rates (at the fixed similarity threshold / at the threshold calibrated on",
            "real non-members) are means over the two fine-tuned models:",
            f"LoRA {extraction_rate(m, 'lora_')} (CFG {extraction_rate(m, 'lora_baseline_')}),",
            f"full fine-tuning {extraction_rate(m, 'full_')} (CFG {extraction_rate(m, 'full_baseline_')}),",
            f"{m['num_train_images']} training images each.",
        )
    lines += para(
        "The sections below put these numbers beside their benchmark scripts' (other seeds, thread",
        "counts and baselines), each labelled by its source.",
    )
    return lines + source(
        "bench.json",
        "modelmine bench --out DIR",
        " (its `DIR/metrics.json` and the per-method wall times of `DIR/times.json`; the command's own"
        " `DIR/table.md` is kept as `results/bench_table.md`). A killed bench resumes method by method",
    )


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
    )
    rows = []
    for key, run in sorted(d["runs"].items()):
        dataset, method = key.split("/", 1)
        m = run.get("metrics", {})
        metric, what = d["headline"].get(method, ["-", "-"])
        argv = run.get("argv", [])
        changed = ", ".join(argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set") or "defaults"
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


def matrix_targets(runs: dict) -> list[str]:
    """The any-dataset targets on mnist5k: TCKR within 3 points of its teacher, CAKE at 0.90 of it."""
    parts = [f"{sum(r.get('exit_status') == 0 for r in runs.values())} of {len(runs)} runs finished"]
    tckr, cake = (
        runs.get("mnist5k/tckr", {}).get("metrics", {}),
        runs.get("mnist5k/cake", {}).get("metrics", {}),
    )
    if "student_acc" in tckr:
        gap = 100 * (tckr["teacher_acc"] - tckr["student_acc"])
        parts.append(f"mnist5k TCKR student {gap:.1f} points below its teacher (target: within 3, "
                     f"{'met' if gap <= 3 else 'missed'})")  # fmt: skip
    if "student_acc" in cake:
        ratio = cake["student_acc"] / cake["teacher_acc"]
        parts.append(f"mnist5k CAKE student at {ratio:.3f} of its teacher (target: 0.90, "
                     f"{'met' if ratio >= 0.9 else 'missed'})")  # fmt: skip
    return para("Targets: " + "; ".join(parts) + ".")


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


def section_pretrain(r: Results) -> list[str] | None:
    d = r.get("diffusion_pretrain.json")
    if d is None:
        return None
    m, prov, samp = d["metrics"], d.get("provenance", {}), d.get("sampling_defaults", {})
    lines = ["## Embedded generator", ""]
    lines += para(
        "The shipped tiny text-to-image generator (`modelmine pretrain`).",
        f"Training data: {prov['data']}." if "data" in prov else "",
        "Classification Accuracy Score (CAS): a classifier's accuracy on generated images against the",
        f"class in their prompt (`{samp.get('prompt', '')}`), {m['cas_images']} images,",
        f"{m['cas_steps']} DDIM steps, CFG {m['cas_cfg']}. `cas_public` is scored by a classifier",
        f"trained on public glyphs (its own accuracy on glyphs {m['public_classifier_acc']:.3f}),",
        "`cas_private` by the default digits teacher: the gap between the two is the domain gap that",
        "LoRA and DAG close.",
    )
    lines += table(
        ["cas_public", "cas_private", "training steps", "training time"],
        [[f3(m["cas_public"]), f3(m["cas_private"]), m["steps"], secs(m["train_seconds"])]],
    )
    names = [k[len("cas_public_") :] for k in m if k.startswith("cas_public_")]
    names.sort(key=lambda n: DIGITS.index(n) if n in DIGITS else len(DIGITS))
    rows = [[n, f3(m[f"cas_public_{n}"]), f3(m.get(f"cas_private_{n}"))] for n in names]
    lines += ["Per class:", ""] + table(["class", "cas_public", "cas_private"], rows)
    if phases := prov.get("phases"):
        lines += para(
            f"Training ran in {len(phases)} warm-started phases, batch {prov['batch_size']},",
            f"on {prov['hardware']}:",
        )
        rows = [
            [i + 1, p["steps"], f"{p['train_seconds']:.0f} s", f"`{p['command']}`" if "command" in p else "-"]
            for i, p in enumerate(phases)
        ]
        lines += table(["phase", "steps", "time", "command"], rows)
    lines += r.image("diffusion_pretrain_samples.png", "embedded generator samples, one column per digit")
    lines += source(
        "diffusion_pretrain.json",
        "python benchmarks/diffusion_pretrain.py --out DIR",
        ", which runs or resumes `modelmine pretrain --out DIR`",
    )
    return lines + (cas_comparison(r) or [])


def cas_comparison(r: Results) -> list[str] | None:
    """CAS of weight files side by side (diffusion_cas.json), on public glyphs, digits and mnist5k."""
    d = r.get("diffusion_cas.json")
    if d is None:
        return None
    lines = ["", "### Generator weights compared", ""]
    lines += para(
        f"The same prompts and seeds for every file ({d['per_class']} images per digit, each file's stored",
        "sampling settings), scored by the public-glyph classifier and by the default teachers of the two",
        "private datasets (mnist5k: images resized to 28x28). `cas_private_mnist5k` is the domain gap",
        "from the public glyphs to real MNIST.",
    )
    rows = [
        [f"{name}: {e['weights']}", f3(e["cas_public"]), f3(e["cas_private"]), f3(e.get("cas_private_mnist5k")),
         e.get("steps"), e.get("cfg")]
        for name, e in d.items() if isinstance(e, dict) and "cas_public" in e
    ]  # fmt: skip
    lines += table(
        ["weights", "cas_public", "cas_private (digits)", "cas_private (mnist5k)", "steps", "cfg"], rows
    )
    return lines + source("diffusion_cas.json", "python benchmarks/diffusion_cas.py --weights NAME=FILE ...")


def section_renamed(r: Results) -> list[str] | None:
    d = r.get("renamed_classes.json")
    if d is None:
        return None
    lines = ["## TCKR on class names the tokenizer does not know", ""]
    lines += para(
        f"The digits of classes {d.get('classes')} as an ImageFolder, once with their digit names and once",
        "renamed; unknown names become new tokens trained with the LoRA. `modelmine tckr --data DIR` with",
        f"its defaults except the reference-model count (see argv). Machine: {machine(d)}.",
        "Target: agreement within 0.1 of the digit-named run, student within 3 points of its teacher.",
        f"Note: {d['note']}." if d.get("note") else "",
    )
    rows = [
        [k, ", ".join(v["class_names"]), v["exit_status"], f3(v["teacher_acc"]), f3(v["student_acc"]),
         f3(v["synthetic_teacher_agreement"]), ", ".join(v.get("added_words", [])) or "-",
         secs(v["wall_seconds"])]
        for k, v in d["runs"].items()
    ]  # fmt: skip
    lines += table(
        [
            "naming",
            "classes",
            "exit",
            "teacher",
            "student",
            "synthetic-teacher agreement",
            "words added",
            "wall",
        ],
        rows,
    )
    if "target_met" in d:
        lines += para(
            f"Agreement gap {d['agreement_gap']:+.3f}, renamed student {d['renamed_student_gap'] * 100:.1f}",
            f"points below its teacher: target {'met' if d['target_met'] else 'missed'}.",
        )
    return lines + source("renamed_classes.json", "python benchmarks/renamed_classes.py")


def section_sampler(r: Results) -> list[str] | None:
    s = r.get("diffusion_sampler_speed.json")
    if s is None:
        return None
    lines = ["## DDIM sampler speed", ""]
    lines += para(
        f"Our DDIM loop on the {s['generator']} generator, batch {s['batch']}, {s['steps']} steps,",
        f"CFG {s['cfg']}; machine: {machine(s)}. The overhead is the loop's time over the time of",
        "the same number of bare UNet calls.",
    )
    lines += table(
        ["images/s", "seconds per batch", "bare UNet seconds", "overhead"],
        [
            [
                f"{s['images_per_second']:.2f}",
                f"{s['seconds_per_batch']:.2f}",
                f"{s['bare_unet_seconds']:.2f}",
                f"{s['overhead_ratio']:.3f}",
            ]
        ],
    )
    return lines + source("diffusion_sampler_speed.json", "python benchmarks/diffusion_sampler_speed.py")


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
    lines += para(PAPER["cake"])
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


TCKR_MODELS = [
    ("teacher (real data)", "teacher"),
    ("TCKR student (soft labels)", "student"),
    ("hard-label student", "student_hard"),
    ("fixed-prompt student", "student_fixed_prompt"),
]
TCKR_HEADER = ["model", "test accuracy", "LiRA AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"]


def tckr_rows(m: dict) -> list[list[str]]:
    keys = ("acc", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")
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
            f"images at cardinality {cards} ({c['sample_steps']} DDIM steps), LiRA with {m['num_shadows']}",
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
        lines += para(
            f"Student minus teacher: accuracy {pts(m['student_acc'], m['teacher_acc'])} points,",
            f"LiRA AUC {pts(m['student_auc'], m['teacher_auc'])} points.",
            PAPER["tckr"],
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
    ("ddis_xt.json", "DAG on x_t (the paper's form, the default)"),
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
        f"Each variant generates {c['num_images']} images ({c['sample_steps']} DDIM steps, {dag_setting(c)};",
        "CAT tokens trained",
        "on DAG-guided samples" if c.get("cat_with_dag") else "without DAG",
        f"for up to {c['cat_iters']} iterations, until {c['cat_stop_acc']:.0%} of a class's batch is",
        "classified as the class),",
        f"distilled into the same `{c['student']['preset']}` student; DeepInversion distils the same",
        f"teacher (`{c['teacher']['preset']}`) from as many images. Machine: {machine(d, workers(c))}.",
    )
    lines += para(PAPER["ddis"]) + ["Student accuracy on the real test digits:", ""]
    rows = [
        [label, *map(f3, sm[k]["student_acc"]["values"]), mean_sd(sm[k]["student_acc"])]
        for k, label in variants
    ]
    if "deepinversion" in sm:
        di = sm["deepinversion"]["student_acc"]
        rows.append(["DeepInversion", *map(f3, di["values"]), mean_sd(di)])
    lines += table(["variant", *[f"seed {s}" for s in seeds], "mean ± sd"], rows)
    lines += para(
        "FID, precision and recall use the penultimate features of a separate",
        f'`{c["feature_preset"]}` classifier trained on the private data (not the teacher); "teacher',
        "agrees\" is the teacher's accuracy on the synthetic images against their prompted class.",
        "Precision, recall and agreement are means over the seeds.",
    )
    rows = []
    for k, label in variants:
        v = sm[k]
        fids = [f"{x:.1f}" for x in v["fid"]["values"]]
        means = [f3(v[x]["mean"]) for x in ("precision", "recall", "teacher_acc_on_synthetic")]
        rows.append([label, *fids, mean_sd(v["fid"], ".1f"), *means])
    header = ["variant", *[f"FID seed {s}" for s in seeds], "FID mean ± sd", "precision", "recall"]
    lines += table([*header, "teacher agrees"], rows)
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
        f"python benchmarks/ddis_bench.py --seeds 0 1 2 --name {name[:-5]}"
        + ("" if name == "ddis_xt.json" else " --set dag_input=x0_hat"),
        "; a finished seed is kept in its `--work` folder and not run again",
    )


def seed_cell(res: dict | None, data: str, key: str) -> str:
    """``mean +- std`` over seeds of one ``finextract_bench.py`` summary key ("-" when missing)."""
    v = None if res is None else res["summary"].get(data, {}).get("stats", {}).get(key)
    return "-" if v is None else f"{v['mean']:.3f} +- {v['std']:.3f}"


def section_finextract_seeds(r: Results, f: dict) -> list[str]:
    """finextract_bench.py's multi-seed, multi-dataset results: mean +- std over seeds per dataset."""
    c, b = f["config"], f["budget"]
    lines = ["## FineXtract", ""]
    lines += para(
        f"The {c['base']} generator fine-tuned on the first {c['num_train_images']} training images of",
        f"class {c['train_class']} of each dataset with LoRA and fully (steps per image: LoRA",
        f"{c['lora']['steps_per_image']}, full {c['full']['steps_per_image']}), then {b['num_generations']}",
        f"generations per method and model ({b['sample_steps']} DDIM steps), clustered, and every training",
        "image matched to its best candidate (features: `pixels`); FineXtract against CFG",
        f"{c['baseline_cfg']:g} of the fine-tuned model from the same start noise. Success rate at the fixed",
        "threshold / at the threshold calibrated on real non-members, then the average similarity; mean",
        f"+- std over seeds {', '.join(map(str, f['seeds']))}"
        + ("" if f["complete"] else " (incomplete: some runs missing)")
        + f". Machine: {machine(f, workers(c))}.",
    )
    lines += para(PAPER["extract"])
    header = ["dataset", "mode", "method", "success rate fixed", "calibrated", "avg similarity"]
    rows = []
    for data in f["summary"]:
        for mode in f["modes"]:
            for label, k in (("FineXtract", ""), (f"CFG {c['baseline_cfg']:g}", "baseline_")):
                metrics = ("success_rate", "calibrated_success_rate", "avg_similarity")
                cells = [seed_cell(f, data, f"{mode}_{k}{metric}") for metric in metrics]
                rows.append([data, mode, label, *cells])
    lines += table(header, rows)
    met = [k for k, t in f["targets"].items() if t["avg_similarity_above_baseline"]]
    lines += para(
        f"FineXtract's mean average similarity is above the baseline's in {len(met)} of",
        f"{len(f['targets'])} (dataset, mode) pairs. Wall time of all runs {secs(f['wall_seconds'])}.",
    )
    for data in f["datasets"]:
        lines += r.image(f"finextract_matches_{data}.png", f"{data}: training images and best candidates")
    return lines + source(
        "finextract.json", "python benchmarks/finextract_bench.py", "; a finished (dataset, seed) run is kept"
    )


def section_finextract(r: Results) -> list[str] | None:
    f = r.get("finextract.json")
    if f is None:
        return None
    if "runs" in f:
        return section_finextract_seeds(r, f)
    m, c = extraction_keys(f["metrics"]), f["config"]
    extra = [f"{x:g}" for x in c.get("extra_baseline_cfgs", [])]
    fixed = (
        f"A training image counts as extracted when its best match reaches {m['similarity_threshold']:g}"
        " (the fixed threshold of the paper's success rate; first number) and, second number, above"
        if "similarity_threshold" in m
        else "This run predates the fixed-threshold rate; a training image counts as extracted above"
    )
    lines = ["## FineXtract", ""]
    lines += para(
        f"The {c['base']} generator fine-tuned on {m['num_train_images']} private digits of class",
        f"{c['train_class']} with LoRA ({c['lora']['steps']} steps, rank {c['lora']['rank']}) and fully",
        f"({c['full']['steps']} steps); then {m['num_generations']} generations per method and model",
        f"({c['sample_steps']} DDIM steps), clustered, and every training image matched to its best",
        f"candidate (features: `{c['features']}`). {fixed}",
        f"{m['calibrated_threshold']:.3f}, the {c['calibration_quantile']:.0%} quantile of real",
        f"non-members' best match. Baselines: CFG {c['baseline_cfg']:g} of the fine-tuned model",
        (f"and CFG {', '.join(extra)}, " if extra else "") + "from the same start noise.",
        f"Seed {f['seed']}; machine: {machine(f, workers(c))}.",
    )
    lines += para(PAPER["extract"])
    modes = c["modes"]
    header = ["method", *[f"{mode}: success rate fixed / calibrated, avg similarity" for mode in modes]]
    header.append("mean of both")

    def row(label: str, metrics: dict, k: str) -> list[str]:
        cells = [
            f"{extraction_rate(metrics, f'{mo}_{k}')}, {metrics[f'{mo}_{k}avg_similarity']:.3f}"
            for mo in modes
        ]
        return [label, *cells, f"{extraction_rate(metrics, k)}, {metrics[f'{k}avg_similarity']:.3f}"]

    rows = [row("FineXtract", m, ""), row(f"CFG {c['baseline_cfg']:g}", m, "baseline_")]
    rows += [row(f"CFG {x}", m, f"baseline_cfg{x}_") for x in extra]
    lines += table(header, rows)
    lines += para(
        f"Whole run {secs(f['wall_seconds'])}. With {m['num_train_images']} images per model, one",
        f"image moves a rate by {1 / m['num_train_images']:.2f}.",
    )
    if bm := bench_methods(r).get("extract"):
        lines += para(
            f"{BENCH}, i.e. `modelmine extract` with its defaults ({bm['num_generations']} generations,",
            f"calibrated threshold {bm['calibrated_threshold']:.3f}, the CFG baseline only):",
        )
        lines += table(header, [row("FineXtract", bm, ""), row("CFG baseline", bm, "baseline_")])
    lines += r.image("finextract_matches.png", "each training image beside its best FineXtract candidate")
    return lines + source("finextract.json", "python benchmarks/finextract_bench.py")


def _recovered_prompts(f: dict, data: str, mode: str) -> str:
    """The recovered prompts of one (dataset, mode), by seed, quoted."""
    found = [
        run["prompts"]["recovered"][mode]
        for key, run in sorted(f["runs"].items())
        if key.split("/")[0] == data and "prompts" in run
    ]
    return "; ".join(f"'{p}'" for p in found) or "-"


def _two_thirds(f: dict) -> str:
    """How many judged (dataset, mode) pairs meet the recovered-prompt target, and which missed."""
    checks = {k: t.get("recovered_prompt_two_thirds") for k, t in f["targets"].items()}
    met = [k for k, v in checks.items() if v]
    judged = [k for k, v in checks.items() if v is not None]
    missed = sorted(set(judged) - set(met))
    return f"{len(met)} of {len(judged)} pairs" + (f" (missed: {', '.join(missed)})" if missed else "")


def section_prompt_recovery(r: Results) -> list[str] | None:
    f, g = r.get("finextract_prompt_auto.json"), r.get("finextract_prompt_response.json")
    main_ = f or g
    if main_ is None:
        return None
    c = main_["config"]
    true = next((run["prompts"]["true"] for run in main_["runs"].values() if "prompts" in run), "-")
    lines = ["## FineXtract with a recovered prompt", ""]
    lines += para(
        "`modelmine extract --prompt auto`: the fine-tuning prompt is searched from the pretrained and",
        "fine-tuned models alone, greedy words by the conditional prediction shift `S` (the default) or by",
        "the response gain `G` (`--set prompt_search.score=response`), then FineXtract runs with it, beside",
        f"FineXtract with the true prompt (`{true}`), from the same start noise. The same runs and",
        "fine-tunes as the FineXtract section's settings (its script with `--prompt-auto`); mean +- std",
        f"over seeds {', '.join(map(str, main_['seeds']))}"
        + ("" if main_["complete"] else " (incomplete: some runs missing)")
        + f". Machine: {machine(main_, workers(c))}.",
    )

    rows, prompts = [], []
    for data in main_["summary"]:
        for mode in main_["modes"]:
            row = [data, mode]
            for metric in ("success_rate", "calibrated_success_rate", "avg_similarity"):
                row.append(seed_cell(main_, data, f"{mode}_{metric}"))
                row += [seed_cell(res, data, f"{mode}_recovered_{metric}") for res in (f, g)]
            rows.append(row)
            prompts.append([
                data, mode, *("-" if res is None else _recovered_prompts(res, data, mode) for res in (f, g)),
                seed_cell(f, data, f"{mode}_prompt_token_accuracy"),
                seed_cell(g, data, f"{mode}_prompt_token_accuracy"),
            ])  # fmt: skip
    lines += table(
        ["dataset", "mode", "rate: true", "S", "G", "calibrated: true", "S", "G", "avg similarity: true", "S", "G"],
        rows,
    )  # fmt: skip
    lines += table(
        ["dataset", "mode", "recovered prompts, S (by seed)", "recovered prompts, G (by seed)",
         "token accuracy S", "G"],
        prompts,
    )  # fmt: skip
    lines += para(
        "The recovered prompt reaches 2/3 of the true prompt's fixed-threshold rate (mean over seeds; judged",
        "where the true prompt's rate is above zero) with `S` in",
        (f"{_two_thirds(f)}" if f else "-")
        + ("; " if f and g else "")
        + (f"with `G` in {_two_thirds(g)}" if g else "")
        + ". Token accuracy: the overlap of the recovered and the true prompt's words.",
    )
    out = []
    if f is not None:
        out += source(
            "finextract_prompt_auto.json",
            "python benchmarks/finextract_bench.py --prompt-auto --name finextract_prompt_auto",
        )
    if g is not None:
        out += source(
            "finextract_prompt_response.json",
            "python benchmarks/finextract_bench.py --prompt-auto --prompt-score response"
            " --name finextract_prompt_response",
        )
    return lines + out + prompt_rank_lines(r, "prompt_rank.json")


def prompt_rank_lines(r: Results, name: str) -> list[str]:
    """prompt_rank_bench.py's ranks of the true prompt's words per score, from ``name`` ([] without it)."""
    f = r.get(name)
    if f is None or not f["runs"]:
        return []
    runs = f["runs"]
    lines = ["### The first word of the search, by score", ""]
    lines += para(
        f"Each candidate word alone (the {next(iter(runs.values()))['candidates']} whole words of the",
        "tokenizer), scored at the search's own states on the fine-tunes of the runs above: the rank of",
        "every word of the true prompt (1 = the word the search takes first) and the top three, per score.",
        f"Machine: {machine(f)}.",
    )

    def cell(run: dict, score: str) -> str:
        return " ".join(f"{w} {k if k is not None else '-'}" for w, k in run[score]["ranks"].items())

    rows = [
        [key, cell(run, "shift"), ", ".join(run["shift"]["top"]), cell(run, "response"), ", ".join(run["response"]["top"])]
        for key, run in sorted(runs.items())
    ]  # fmt: skip
    lines += table(["dataset/mode/seed", "S: ranks", "S: top 3", "G: ranks", "G: top 3"], rows)
    firsts = {
        score: sum(1 for run in runs.values() if 1 in run[score]["ranks"].values())
        for score in ("shift", "response")
    }
    lines += para(
        f"A word of the true prompt ranks first on {firsts['shift']} of {len(runs)} fine-tunes with `S`",
        f"and on {firsts['response']} with `G`.",
    )
    extra = "" if name == "prompt_rank.json" else f" --name {name.removesuffix('.json')}"
    return lines + source(
        name,
        f"python benchmarks/prompt_rank_bench.py --work <finextract_bench work folder>/{f['work']}{extra}",
        ", after that `finextract_bench.py` run has left its fine-tunes",
    )


def section_finextract_identifier(r: Results) -> list[str] | None:
    f = r.get("finextract_sks.json")
    if f is None:
        return None
    c, ident = f["config"], f["settings"]["identifier"]
    true = next((run["prompts"]["true"] for run in f["runs"].values() if "prompts" in run), None)
    lines = ["## FineXtract with a DreamBooth identifier", ""]
    lines += para(
        f"DreamBooth's setting: the same runs as the FineXtract section, fine-tuned on `{true or ident}`",
        f"(`--set identifier={ident}`; the embedded tokenizer does not know the identifier, so it becomes a",
        "new token trained with the fine-tuning)"
        + (
            ", and the prompt recovered with `--prompt auto` beside it"
            if f["settings"]["prompt_auto"]
            else ""
        )
        + f". Mean +- std over seeds {', '.join(map(str, f['seeds']))}"
        + ("" if f["complete"] else " (incomplete: some runs missing)")
        + f". Machine: {machine(f, workers(c))}.",
    )

    rows = [
        [data, mode, *(seed_cell(f, data, f"{mode}_{k}") for k in (
            "success_rate", "baseline_success_rate", "calibrated_success_rate", "baseline_calibrated_success_rate",
            "avg_similarity", "baseline_avg_similarity", "recovered_success_rate")),
         _recovered_prompts(f, data, mode)]
        for data in f["summary"] for mode in f["modes"]
    ]  # fmt: skip
    lines += table(
        ["dataset", "mode", "FineXtract: rate", f"CFG {c['baseline_cfg']:g}: rate", "FineXtract: calibrated",
         "CFG: calibrated", "FineXtract: avg similarity", "CFG: avg similarity", "recovered prompt: rate",
         "recovered prompts (by seed)"],
        rows,
    )  # fmt: skip
    t = f["targets"]
    above = [k for k, v in t.items() if v["avg_similarity_above_baseline"]]
    judged = {
        k: v["success_rate_2x_baseline"] for k, v in t.items() if v["success_rate_2x_baseline"] is not None
    }
    lines += para(
        f"FineXtract's average similarity is above CFG's in {len(above)} of {len(t)} (dataset, mode) pairs;",
        f"its rate is at least twice CFG's in {sum(judged.values())} of the {len(judged)} pairs where CFG's is",
        f"above zero; the recovered prompt reaches 2/3 of the true prompt's rate in {_two_thirds(f)}.",
    )
    cmd = f"python benchmarks/finextract_bench.py --identifier {ident}"
    cmd += " --prompt-auto" if f["settings"]["prompt_auto"] else ""
    lines += source("finextract_sks.json", cmd + " --name finextract_sks")
    return lines + prompt_rank_lines(r, "prompt_rank_sks.json")


def section_audit_generator(r: Results) -> list[str] | None:
    a = r.get("audit_generator.json")
    if a is None:
        return None
    m, c = extraction_keys(a["metrics"]), a["config"]
    n = m["num_train_images"]
    lines = ["## audit generator", ""]
    lines += para(
        "`modelmine audit generator` on the LoRA of the TCKR benchmark run (`results/tckr.json`):",
        f"{m['num_generations']} FineXtract generations (w = {m['w']:g}) and {m['num_generations']}",
        f"CFG {c['baseline_cfg']:g} generations from the same noise, prompted with the private images'",
        f"own captions, {c['sample_steps']} DDIM steps. A private image leaks when its best match is",
        f"above {m['calibrated_threshold']:.3f}, the {c['calibration_quantile']:.0%} quantile of the",
        "held-out images' best matches"
        + (
            f"; the paper's success rate counts matches of at least {m['similarity_threshold']:g}."
            if "similarity_threshold" in m
            else "."
        ),
        f"Seed {a['seed']}; machine: {machine(a, n_threads(c['threads']))}.",
    )
    rows = [
        ["FineXtract", f"{m['leaked_images']} of {n}", extraction_rate(m), f3(m["avg_similarity"])],
        [
            f"CFG {c['baseline_cfg']:g}",
            f"{m['baseline_leaked_images']} of {n}",
            extraction_rate(m, "baseline_"),
            f3(m["baseline_avg_similarity"]),
        ],
    ]
    header = ["method", "private images leaked", "success rate fixed / calibrated", "average best similarity"]
    lines += table(header, rows)
    lines += para(
        f"Time {secs(a['wall_seconds'])}. With {m['num_generations']} generations for {n} private",
        "images the leak count is a lower bound.",
    )
    lines += r.image("audit_generator_leaks.png", "private images beside their closest generations")
    return lines + source(
        "audit_generator.json",
        "python benchmarks/audit_generator_bench.py",
        ", after `python benchmarks/tckr_bench.py` has left its run folder",
    )


LIRA_VARIANTS = [
    ("online, per-example variance", "online_"),
    ("online, fixed variance", "online_fixed_"),
    ("offline, per-example variance", "offline_"),
    ("offline, fixed variance", "offline_fixed_"),
]
LIRA_HEADER = ["attack", "AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"]


def lira_rows(m: dict) -> list[list[str]]:
    """One row per variant; older results name online, per-example variance without a prefix, and
    TPR at 0.1% FPR is absent with fewer than 1,000 non-members ("-")."""
    keys = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")
    rows = []
    for label, k in LIRA_VARIANTS:
        k = "" if k == "online_" and "online_auc" not in m else k
        if f"{k}auc" in m:
            rows.append([label, *(f3(m.get(f"{k}{x}")) for x in keys)])
    return rows


def section_lira(r: Results) -> list[str] | None:
    lira = r.get("lira_teacher.json")
    if lira is None:
        return None
    lines = ["## LiRA", ""]
    lines += para(
        f"`modelmine audit lira` on the default teacher: {lira['num_shadows']} shadow models (keep-mask",
        f"seed {lira['keep_seed']}); members the {lira['num_members']} private training digits,",
        f"non-members the {lira['num_nonmembers']} held-out digits. Machine: {machine(lira)}.",
        f"Shadow training {secs(lira['shadow_seconds'])}, whole audit {secs(lira['wall_seconds'])}.",
    )
    lines += table(LIRA_HEADER, lira_rows(lira))
    if m := bench_methods(r).get("audit lira"):
        lines += para(f"{BENCH}, {m['num_shadows']} shadows:") + table(LIRA_HEADER, lira_rows(m))
    return lines + source("lira_teacher.json", "python benchmarks/lira_bench.py --shadows 16 --threads 2")


MIA_REFS_ATTACKS = [
    ("RMIA offline", "rmia_offline"),
    ("RMIA online", "rmia_online"),
    ("LiRA offline, fixed variance", "lira_offline_fixed"),
    ("LiRA online, fixed variance", "lira_online_fixed"),
]


def section_mia_refs(r: Results) -> list[str] | None:
    d = r.get("mia_refs.json")
    if d is None:
        return None
    refs = [str(m) for m in d["refs"]]
    per_model = d.get("seconds_per_reference_model")
    lines = ["## Membership inference against the number of reference models", ""]
    lines += para(
        "`modelmine audit membership` on the default teacher, scored with the first M of one set of",
        f"{refs[-1]} reference models (each trained like the target, on {d['shadow_train_size']} of the",
        f"population's images); members the {d['num_members']} private training digits, non-members the",
        f'{d["num_nonmembers"]} held-out digits. Online attacks need two models or more ("-": not run).',
        f"Training time per reference model {secs(per_model)}." if per_model else "",
        f"Machine: {machine(d)}.",
    )
    for title, key in (("AUC", "auc"), ("TPR at 1% FPR", "tpr_at_1pct_fpr")):
        rows = [
            [label, *(f3(d["results"][m].get(f"{a}_{key}")) for m in refs)] for label, a in MIA_REFS_ATTACKS
        ]
        lines += para(f"{title}:") + table(["attack", *(f"M = {m}" for m in refs)], rows)
    if not d.get("matches_command", True):
        lines += para(f"Warning: the M = {refs[-1]} scores differ from the command's own metrics.")
    return lines + source("mia_refs.json", "python benchmarks/mia_refs.py --threads 2")


def section_shard(r: Results) -> list[str] | None:
    s = r.get("shard.json")
    if s is None:
        return None
    n = s["processes"]
    labels = {
        "one_process_1_thread": "1 process, 1 thread",
        f"one_process_{n}_threads": f"1 process, {n} threads",
        f"{n}_processes_1_thread": f"{n} processes x 1 thread (`accelerate launch`)",
    }
    rows = [
        [
            labels.get(k, k),
            secs(w["wall_seconds"]),
            f"{s['speedup_vs_one_thread'][k]:.2f}",
            secs(w["synthesis_seconds_summed"]),
            f3(w["student_acc"]),
        ]
        for k, w in s["ways"].items()
    ]
    lines = ["## Sharding with accelerate launch", ""]
    lines += para(
        "`modelmine cake` with its defaults, end to end (teacher, synthesis batches, student), three",
        f"ways, each in a fresh folder. Machine: {machine(s)}, CUDA: {'yes' if s.get('cuda') else 'no'}.",
    )
    lines += table(["way", "wall time", "speed-up", "synthesis time, summed over batches", "student"], rows)
    equal = "equal" if s["sharded_metrics_equal_single"] else "do NOT equal"
    lines += para(f"The sharded run's metrics {equal} the single-process run's.")
    return lines + source("shard.json", f"python benchmarks/shard_bench.py --processes {n}")


def section_sd_format(r: Results) -> list[str] | None:
    d = r.get("sd_format.json")
    if d is None:
        return None
    lines = ["## Stable Diffusion format", ""]
    lines += para(
        "Tiny random-weight `StableDiffusionPipeline` folders saved in the real formats",
        "(`modelmine.diffusion.tiny_sd`: SD 1.x and 2-base styles with PNDM + epsilon, the 2-768 style",
        "with DDIM + v-prediction; an AutoencoderKL; CLIP's BPE tokenizer), each with its scheduler config",
        "carrying no `clip_sample` entry, `true` or `false`. Parity: the largest absolute difference",
        "between our latents and `StableDiffusionPipeline`'s with a `DDIMScheduler` loaded from the folder,",
        "same noise, 10 steps, CFG 3; beside it, how far the same DDIM with the latent clamp",
        f"(`clip_sample=True`) lands from the pipeline. Machine: {machine(d.get('machine', {}))}.",
    )
    rows = [
        [key.split("/")[0], key.split("/")[1], f"{p['max_abs_diff']:.1e}", f"{p['clamp_max_abs_diff']:.2f}",
         f"{p['latent_abs_max']:.2f}"]
        for key, p in d.get("parity", {}).items()
    ]  # fmt: skip
    lines += table(
        ["style", "clip_sample entry", "ours vs pipeline", "clamped vs pipeline", "largest latent"], rows
    )
    if v := d.get("v_loss"):
        lines += para(
            "A LoRA (rank 4, 60 steps) on the v-prediction folder's four training images, fixed",
            f"timesteps and noise: v loss {v['v_loss_before']:.3f} -> {v['v_loss_after']:.3f},",
            f"epsilon loss {v['eps_loss_before']:.3f} -> {v['eps_loss_after']:.3f}.",
        )
    rows = []
    for name, c in d.get("commands", {}).items():
        m = c.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
        if "recovered_prompt" in c:
            shown += f"; recovered {c['recovered_prompt']}"
        rows.append([f"`{name}`", c["exit"], f"{c['seconds']:.1f}", shown or " ".join(c.get("stderr", []))])
    if rows:
        lines += para(
            "Every generator command once on the fixtures (16x16 images, 8x8 latents; tiny budgets, one",
            "process each, the time including start-up; the tiny BLIP-2 captions TCKR's images). Random",
            "weights: the metrics show that each command runs and writes them, not quality.",
        )
        lines += table(["command", "exit", "seconds", "metrics"], rows)
    return lines + source("sd_format.json", "python benchmarks/sd_format.py")


SECTIONS: list[Callable[[Results], list[str] | None]] = [
    section_bench,
    section_teacher,
    section_matrix,
    section_background_noise,
    section_pretrain,
    section_sampler,
    section_sd_format,
    section_cake,
    section_moons,
    section_tckr,
    section_renamed,
    section_ddis,
    section_finextract,
    section_prompt_recovery,
    section_finextract_identifier,
    section_audit_generator,
    section_lira,
    section_mia_refs,
    section_shard,
]


def render(folder: Path = RESULTS) -> str:
    """The whole of RESULTS.md for the JSON files in ``folder``."""
    r = Results(folder)
    bodies = []
    for section in SECTIONS:
        before = set(r.used)
        if lines := section(r):
            earlier = sorted((r.used - before) & EARLIER_TEACHER)
            bodies.append(
                lines
                + (para(EARLIER_NOTE.format(files=", ".join(f"`{e}`" for e in earlier))) if earlier else [])
            )
    toc = []
    for lines in bodies:
        title = lines[0].removeprefix("## ")
        anchor = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -").replace(" ", "-")
        toc.append(f"- [{title}](#{anchor})")
    head = [
        "<!-- Generated by benchmarks/table.py from benchmarks/results/*.json: do not edit by hand. -->",
        "",
        "# Benchmark results",
        "",
        *para(
            "This file is generated by `benchmarks/table.py` from the JSON files in `benchmarks/results/`;",
            "do not edit it by hand. To update it, rerun the benchmark script a section names, then",
            "regenerate:",
        ),
        "```bash",
        "python benchmarks/table.py            # rewrites benchmarks/RESULTS.md",
        "python benchmarks/table.py --check    # fails if this file is out of date",
        "```",
        "",
        *para(
            "Each section names its source file, the script that writes it, and the seed, thread settings",
            "and machine recorded there. Two sources (a benchmark script and `modelmine bench`) measure",
            "some methods at different seeds or thread counts and do not always agree; both are shown,",
            "each labelled, never merged. Paper numbers come from other data, models and budgets and are",
            "there for orientation only.",
        ),
        *toc,
        "",
    ]
    out = head + [line for lines in bodies for line in lines]
    if extra := r.unused():
        out += ["## Other result files", "", "Not read by any section above:", ""]
        out += [f"- `results/{name}`" for name in extra] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT), help="markdown file to write (default: benchmarks/RESULTS.md)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out is out of date")
    args = ap.parse_args()
    text = render()
    out = Path(args.out)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date: run python benchmarks/table.py", file=sys.stderr)
            sys.exit(1)
        print(f"{out} is up to date")
        return
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
