"""DDIM and DPM-Solver++(2M) against the number of steps on the embedded generator."""

from __future__ import annotations

from _render import Results, f3, machine, para, source, table


def section_sampler_steps(r: Results) -> list[str] | None:
    s = r.get("sampler_steps.json")
    if s is None:
        return None
    rows = [
        [
            run["sampler"],
            str(run["steps"]),
            f3(run["cas_public"]),
            f3(run["cas_private"]),
            f"{run['images_per_second']:.1f}",
        ]
        for run in s["runs"].values()
    ]
    lines = ["## Samplers and step counts", ""]
    lines += para(
        f'The embedded generator, {s["per_class"]} images per digit ("a photo of digit <class>", CFG',
        f"{s['cfg']:g}, the same start noise for every setting), scored by the public-glyph classifier and",
        f"the default digits teacher; machine: {machine(s)}. CAS from {10 * s['per_class']} images moves by",
        "a few points between seeds: a first look, not yet the comparison that chooses the defaults.",
    )
    lines += table(["sampler", "steps", "CAS public", "CAS private", "images/s"], rows)
    return lines + source(
        "sampler_steps.json", f"python benchmarks/sampler_steps.py --per-class {s['per_class']}"
    )
