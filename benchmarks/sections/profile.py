"""Where each generator command's time goes (cProfile, model calls against the rest)."""

from __future__ import annotations

from _render import Results, machine, para, source, table


def section_profile(r: Results) -> list[str] | None:
    s = r.get("profile_commands.json")
    if s is None:
        return None
    rows = []
    for command, run in s["runs"].items():
        sh = run["shares"]
        top = ", ".join(f"`{t['function'][-48:]}` {t['seconds']:.0f} s" for t in run["top"][:3])
        rows.append(
            [
                f"`{command}`",
                f"{run['wall_seconds']:.0f} s",
                *(f"{sh[k]:.0%}" for k in ("torch", "python", "io")),
                top,
            ]
        )
    lines = ["## Where the time goes", ""]
    lines += para(
        "Each command once under cProfile, in one process, at a reduced size (`SMALL` in the script),",
        "own time grouped: torch (compiled operators and autograd: the model calls), python (our code,",
        f"module glue, data handling), io (files). Machine: {machine(s)}.",
    )
    lines += table(["command", "wall", "torch", "python", "io", "most own time"], rows)
    return lines + source("profile_commands.json", "python benchmarks/profile_commands.py")
