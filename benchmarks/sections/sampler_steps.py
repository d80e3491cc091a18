"""DDIM and DPM-Solver++(2M) against the number of steps on the embedded generator."""

from __future__ import annotations

from _render import Results, f3, machine, para, source, table

RUNS = ("sampler_steps.json", "sampler_steps_200.json")  # (1,000 images per setting; 200, with FID)


def _rows(s: dict) -> list[list[str]]:
    return [
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


def section_sampler_steps(r: Results) -> list[str] | None:
    found = [(name, s) for name in RUNS if (s := r.get(name)) is not None]
    if not found:
        return None
    lines = ["## Samplers and step counts", ""]
    s = found[0][1]
    lines += para(
        f'The embedded generator prompted "a photo of digit <class>" (CFG {s["cfg"]:g}, the same start noise',
        "for every setting), scored by the public-glyph classifier and the default digits teacher; FID",
        "against as many held-out public glyphs on the public classifier's features; one torch thread,",
        f"machine: {machine(s)}. The commands sample with DPM-Solver++(2M) at 10 steps: above DDIM-30's",
        "CAS and below its FID at about three times its rate. CAS moves by about a point between seeds.",
    )
    for name, s in found:
        lines += para(f"{10 * s['per_class']} images per setting (`results/{name}`):")
        lines += table(["sampler", "steps", "CAS public", "CAS private", "FID public", "images/s"], _rows(s))
    return lines + source(
        "sampler_steps.json",
        "python benchmarks/sampler_steps.py",
        "; `sampler_steps_200.json` by `python benchmarks/sampler_steps.py --per-class 20 --name sampler_steps_200`",
    )
