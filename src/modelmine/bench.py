"""`modelmine bench --out DIR`: every method on the embedded default, one markdown table.

Each method runs through its own command (the same ``run`` as ``modelmine <method>``) in
``DIR/<method>/`` with its default config (the settings its benchmark script uses), so a killed
bench resumes method by method and finished methods are not rerun. ``DIR/table.md`` lists per
method the headline accuracy, the membership AUC or extraction rate, the synthesis speed, the wall
time of the run that produced it, and the paper's headline number beside it; ``DIR/metrics.json``
holds the same numbers as flat keys (``<method>_<metric>``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .commands import COMMANDS, run_command
from .config import load_config, parse_set
from .distributed import processes
from .errors import UserError
from .papers import paper_cell
from .report import markdown_table
from .runs import Run, atomic_write_text


@dataclass
class BenchConfig:
    methods: list[str] = field(
        default_factory=lambda: ["teacher", "cake", "deepinversion", "tckr", "ddis", "extract", "audit lira"]
    )
    sets: list[str] = field(default_factory=list)  # per-method overrides "method:key=value"


def rate_cell(m: dict, prefix: str = "") -> str:
    """``prefix``'s extraction rate at the fixed threshold, then at the calibrated one: "0.40 / 0.10"
    ("-" for a rate the metrics do not hold)."""
    rates = [m.get(f"{prefix}success_rate"), m.get(f"{prefix}calibrated_success_rate")]
    return " / ".join("-" if x is None else f"{x:.2f}" for x in rates)


def headline_cells(m: dict) -> list[str]:
    """A method's metrics as the bench table's accuracy, AUC / extraction and images/s cells (the same
    cells RESULTS.md's bench section shows)."""
    acc = m.get("student_acc", m.get("teacher_acc"))
    if "success_rate" in m or "calibrated_success_rate" in m:
        leak = f"extraction {rate_cell(m)} (CFG {rate_cell(m, 'baseline_')})"
    elif "student_auc" in m:
        leak = f"AUC {m['student_auc']:.3f} (teacher {m['teacher_auc']:.3f})"
    elif "auc" in m:
        leak = f"AUC {m['auc']:.3f}"
    else:
        leak = "-"
    n = m.get("num_samples", m.get("num_synthetic", m.get("num_images", m.get("num_generations"))))
    syn = m.get("synthesis_seconds", m.get("generation_seconds"))
    return ["-" if acc is None else f"{acc:.3f}", leak, f"{n / syn:.1f}" if n and syn else "-"]


def _row(name: str, m: dict, seconds: float) -> dict:
    acc, leak, speed = headline_cells(m)
    return {
        "method": name,
        "accuracy": acc,
        "AUC / extraction": leak,
        "images/s": speed,
        "wall time": f"{seconds / 60:.1f} min",
        "paper": paper_cell(name),
    }


def run(cfg: BenchConfig, out: Path) -> dict:

    unknown = [m for m in cfg.methods if m not in COMMANDS or m == "bench"]
    if unknown:
        raise UserError(
            f"bench: unknown method '{unknown[0]}' (known: {', '.join(sorted(c for c in COMMANDS if c != 'bench'))})"
        )
    per_method: dict[str, list[str]] = {}
    for item in cfg.sets:
        if ":" not in item:
            raise UserError(f"bench sets entry '{item}' must look like method:key=value")
        method, kv = item.split(":", 1)
        per_method.setdefault(method, []).append(kv)
    procs = processes()  # under `accelerate launch` each method shards its own work
    run_ = Run(out, cfg)
    times_path = run_.dir / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    rows, flat = [], {}
    for name in cfg.methods:
        cmd = COMMANDS[name]
        mcfg = load_config(cmd.config, None, parse_set(per_method.get(name, [])))
        folder = run_.dir / name.replace(" ", "_")
        t0 = time.time()
        metrics = run_command(cmd, mcfg, folder)
        if not procs.is_main:
            continue
        if name not in times:  # the run that did the work, not a resume that found it finished
            times[name] = time.time() - t0
            atomic_write_text(times_path, json.dumps(times, indent=2))
        rows.append(_row(name, metrics, times[name]))
        key = name.replace(" ", "_")
        flat |= {f"{key}_{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
        atomic_write_text(run_.dir / "table.md", markdown_table(rows))
    return run_.log_metrics(**flat) if procs.is_main else {}
