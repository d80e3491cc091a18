"""Wall time of the generator commands with their defaults, before and after, from one run."""

from __future__ import annotations

from _render import Results, f3, machine, para, secs, source, table

# the metrics each command's row shows: (metrics.json key, column label)
HEADLINES = {
    "tckr": [("student_acc", "student acc"), ("student_auc", "student AUC")],
    "ddis": [("student_acc", "student acc"), ("fid", "FID")],
    "extract": [("lora_success_rate", "LoRA rate"), ("full_success_rate", "full rate")],
}


# the generation step each command's time includes: (metrics.json key, what it times)
GENERATION = {"tckr": "generation_seconds", "ddis": "synthesis_seconds", "extract": "lora_seconds"}


def _generation(command: str, before: dict | None, after: dict | None) -> str:
    key = GENERATION[command]
    b, a = (r["metrics"].get(key) if r else None for r in (before, after))
    return f"{b:.0f} s -> {a:.0f} s" if b is not None and a is not None else "-"


def _headline(command: str, metrics: dict) -> str:
    return ", ".join(f"{label} {f3(metrics.get(key))}" for key, label in HEADLINES[command])


def section_speed(r: Results) -> list[str] | None:
    s = r.get("speed.json")
    if s is None:
        return None
    rows = []
    for command in HEADLINES:
        before, after = s["runs"].get(f"before/{command}"), s["runs"].get(f"after/{command}")
        if before is None and after is None:
            continue
        ratio = f"{before['wall_seconds'] / after['wall_seconds']:.2f}x" if before and after else "-"
        rows.append(
            [
                f"`{command}`",
                secs(before["wall_seconds"]) if before else "-",
                secs(after["wall_seconds"]) if after else "-",
                ratio,
                _generation(command, before, after),
                _headline(command, before["metrics"]) if before else "-",
                _headline(command, after["metrics"]) if after else "-",
            ]
        )
    lines = ["## Command wall time, before and after", ""]
    lines += para(
        "Each command with its defaults on the private digits (`modelmine <command> --out DIR`), one",
        "command at a time in a fresh process, the two source trees timed in the same session;",
        f"revisions `{(s.get('before') or '?')[:12]}` (before) and `{(s.get('after') or '?')[:12]}` (after).",
        f"Machine: {machine(s)}. The ratio is",
        "before / after (2.00x: half the time). Generation: the sampling the command times itself",
        "(tckr: its synthetic set; ddis: the DDIS variant's images; extract: FineXtract on the LoRA).",
        "Headline metrics are one seed each. `extract` and `ddis` went back to their papers' DDIM (50 and",
        "30 steps) after these runs: at 10 DPM-Solver++ steps FineXtract fell below CFG on mnist5k and",
        "DDIS's student lost 2.5 points over 3 seeds (their sections), so their rows time the",
        "`--set sampler=dpmpp_2m sample_steps=10` option, not today's defaults.",
    )
    header = ["command", "before", "after", "ratio", "generation", "headline before", "headline after"]
    lines += table(header, rows)
    return lines + source("speed.json", "python benchmarks/speed.py --before REF")
