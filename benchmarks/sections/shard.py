"""One CAKE run three ways: one process with one or several threads, several processes."""

from __future__ import annotations

from _render import Results, f3, machine, para, secs, source, table


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
