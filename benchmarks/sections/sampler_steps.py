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
            f"{run['fid_public']:.2f}" if "fid_public" in run else "-",
            f"{run['images_per_second']:.1f}",
        ]
        for run in s["runs"].values()
    ]
    lines = ["## Samplers and step counts", ""]
    lines += para(
        f'The embedded generator, {s["per_class"]} images per digit ("a photo of digit <class>", CFG',
        f"{s['cfg']:g}, the same start noise for every setting), scored by the public-glyph classifier and",
        "the default digits teacher; FID against as many held-out public glyphs on the public classifier's",
        f"features; machine: {machine(s)}, one torch thread. CAS from {10 * s['per_class']} images moves by",
        "about a point between seeds. The commands sample with DPM-Solver++(2M) at 10 steps: at least",
        "DDIM-30's CAS at about three times its rate.",
    )
    lines += table(["sampler", "steps", "CAS public", "CAS private", "FID public", "images/s"], rows)
    return lines + source(
        "sampler_steps.json", f"python benchmarks/sampler_steps.py --per-class {s['per_class']}"
    )
