"""CAKE's start and step rule on digits, mnist5k and a non-digit set, against its 0.90 target."""

from __future__ import annotations

from _render import Results, f3, machine, para, source, table

LABELS = {
    "batchnorm": "start read off the first BatchNorm layer, 30 steps",
    "generic": "official start (no layer read), 30 steps",
    "generic_adaptive": "official start, until 90% reach their target (at most 60 steps)",
    "generic_adaptive_weak_priors": "the same, without the digit-chosen priors (full resolution, no stretch, w_tv 1e4)",
    "deepinversion": "DeepInversion, same teacher",
}


def section_cake_agnostic(r: Results) -> list[str] | None:
    s = r.get("cake_agnostic.json")
    if s is None:
        return None
    rows = []
    for key, run in s["runs"].items():
        dataset, variant = key.split("/")
        ratio = run["student_acc"] / run["teacher_acc"]
        rows.append(
            [
                dataset,
                LABELS.get(variant, variant),
                f3(run["teacher_acc"]),
                f3(run["student_acc"]),
                f"{ratio:.3f} ({'met' if ratio >= 0.9 else 'missed'})",
                f3(run.get("synthesis_target_acc")),
                f"{run['synthesis_steps']:.1f}" if "synthesis_steps" in run else "-",
                f"{run['wall_seconds']:.0f} s",
            ]
        )
    lines = ["## CAKE without reading the teacher", ""]
    lines += para(
        "Each dataset's default teacher, distilled by CAKE with its other defaults and the start and",
        "step rule of the row; target: a student at 0.90 of its teacher's accuracy or better. `patches`:",
        "grey 16 px patches of six pictures shipped inside scikit-learn and matplotlib, one class per",
        f"picture (`benchmarks/_patches.py`). One seed; machine: {machine(s)}.",
    )
    header = ["data", "CAKE setting", "teacher", "student", "student / teacher", "reach target", "steps",
              "time"]  # fmt: skip
    lines += table(header, rows)
    return lines + source("cake_agnostic.json", "python benchmarks/cake_agnostic.py")
