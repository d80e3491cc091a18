"""Test files run many times in a row: the check that no test depends on timing."""

from __future__ import annotations

from _render import Results, machine, para, secs, source, table


def section_repeat(r: Results) -> list[str] | None:
    s = r.get("repeat_timing.json")
    if s is None:
        return None
    runs = s["runs"]
    failing = sorted({t for run in runs for t in run["failing"]})
    rows = [
        [f"{len(runs)}", f"{sum(x['returncode'] == 0 for x in runs)}", secs(max(x["seconds"] for x in runs))]
    ]
    lines = ["## Tests repeated", ""]
    lines += para(
        f"`{' '.join(s['paths'])}` (the tests that kill, interrupt or lock runs) in a fresh pytest process",
        f"each time; machine: {machine(s)}.",
        "Failing tests: " + (", ".join(f"`{t}`" for t in failing) if failing else "none") + ".",
    )
    lines += table(["repetitions", "all passed", "longest"], rows)
    return lines + source(
        "repeat_timing.json",
        f"python benchmarks/repeat_tests.py --times {s['times']} --name repeat_timing "
        + " ".join(s["paths"]),
    )
