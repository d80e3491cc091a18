"""Where each generator command's time goes: cProfile over a small run, model calls against the rest.

    python benchmarks/profile_commands.py [--commands tckr ddis extract] [--work benchmarks/out/profile]

Each command runs once in this process (``workers=1``, so every task is profiled) on the private
digits at a reduced size (below, ``SMALL``: the same code paths, fewer images and models). The
functions are grouped by where their own time (cProfile's ``tottime``) is spent: ``torch`` (torch's
compiled operators and autograd: the model calls, forward and backward), ``python`` (everything
else: our code, diffusers/peft module glue, data handling) and ``io`` (reading and writing files).
Writes ``results/profile_commands.json``: per command the wall time, the three shares and the ten
functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import time
from pathlib import Path

from _bench import run_cli
from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results" / "profile_commands.json"
SMALL = {
    "tckr": {"workers": 1, "num_shadows": 4, "cardinality": [0.25], "lora": {"steps": 150}},
    "ddis": {"workers": 1, "num_images": 200, "cat_iters": 10},
    "extract": {"workers": 1, "num_generations": 100, "modes": ["lora"]},
}
IO = ("'read' of", "'write' of", "safetensors", "io.open", "/PIL/", "zlib")


def group(stats: pstats.Stats) -> tuple[dict[str, float], list[dict]]:
    """Own time per group (see the module docstring) and the ten functions with the most own time."""
    shares = {"torch": 0.0, "python": 0.0, "io": 0.0}
    rows = []
    for (file, line, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{file}:{line}({name})" if file != "~" else name
        if any(k in where for k in IO):
            shares["io"] += tottime
        elif file == "~" and "torch" in name:  # compiled operators, autograd's engine
            shares["torch"] += tottime
        else:
            shares["python"] += tottime
        rows.append({"function": where[-120:], "seconds": tottime})
    rows.sort(key=lambda r: -r["seconds"])
    return shares, rows[:10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", nargs="+", default=list(SMALL), choices=list(SMALL))
    ap.add_argument("--work", default="benchmarks/out/profile")
    args = ap.parse_args()
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    for command in args.commands:
        out = Path(args.work) / command
        shutil.rmtree(out, ignore_errors=True)
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.runcall(run_cli, command, out, SMALL[command])
        wall = time.perf_counter() - t0
        shares, top = group(pstats.Stats(profiler))
        total = sum(shares.values())
        res["runs"][command] = {
            "wall_seconds": wall,
            "settings": SMALL[command],
            "shares": {k: v / total for k, v in shares.items()},
            "top": top,
        }
        res |= machine_info()
        write_results(RESULTS, res)
        print(command, f"{wall:.0f} s", {k: round(v / total, 3) for k, v in shares.items()}, flush=True)


if __name__ == "__main__":
    main()
