"""RESULTS.md's first section: ``modelmine bench``'s table of every method (results/bench.json)."""

from __future__ import annotations

from _render import Results, bench_methods, para, source, table
from modelmine.bench import headline_cells, rate_cell
from modelmine.papers import paper_cell


def section_bench(r: Results) -> list[str] | None:
    b = r.get("bench.json")
    if b is None:
        return None
    per = bench_methods(r)
    rows = []
    for name, m in per.items():
        wall = f"{b['wall_seconds'][name] / 60:.1f} min"  # (bench_methods maps older key names)
        rows.append([name, *headline_cells(m), wall, paper_cell(name)])
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
            f"LoRA {rate_cell(m, 'lora_')} (CFG {rate_cell(m, 'lora_baseline_')}),",
            f"full fine-tuning {rate_cell(m, 'full_')} (CFG {rate_cell(m, 'full_baseline_')}),",
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
