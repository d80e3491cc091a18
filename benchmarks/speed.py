"""Wall time of the generator commands with their defaults, before and after a change, in one run.

    python benchmarks/speed.py --before REF [--after REF] [--labels before after]
                               [--commands tckr ddis extract] [--work benchmarks/out/speed]

``before`` and ``after`` are the source trees of two git revisions (``after``: HEAD by default),
each ``git archive REV src`` unpacked under ``--work`` (so editing the checkout while a command
runs changes nothing); both run in this virtual environment as a user runs them,
``python -m modelmine <command> --out DIR`` with no other argument (the private digits, every
default), one command at a time in a fresh process, so the two trees are timed on the same machine
in the same session. Each finished (label, command) is written to ``results/speed.json`` at once
with its wall time and the run's ``metrics.json``; an interrupted command is started again from an
empty folder (a resumed run would time only its rest). The ratio ``before / after`` and the
headline metrics of both are in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results" / "speed.json"
ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("tckr", "ddis", "extract")


def source_tree(ref: str, work: Path) -> tuple[Path, str]:
    """``(src folder, revision)`` of the git revision ``ref``: its ``src`` unpacked once under ``work``."""
    rev = _git("rev-parse", ref)
    dest = work / f"src_{rev[:12]}"
    if not (dest / "src" / "modelmine").is_dir():
        archive = subprocess.run(
            ["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    return dest / "src", rev


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def time_command(command: str, src: Path, out: Path) -> dict:
    """Run ``modelmine <command> --out out`` from ``src`` in a fresh process; its wall time and metrics."""
    if out.exists():
        shutil.rmtree(out)  # an interrupted run: start again so the time is the whole run's
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    log = out.parent / f"{out.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        status = subprocess.run(
            [sys.executable, "-m", "modelmine", *command.split(), "--out", str(out)],
            env=env,
            stdout=f,
            stderr=f,
        ).returncode
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"`modelmine {command}` from {src} exited with {status}; see {log}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "wall_seconds": seconds,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="git revision timed as 'before'")
    ap.add_argument("--after", default="HEAD", help="git revision timed as 'after'")
    ap.add_argument("--labels", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    ap.add_argument("--work", default="benchmarks/out/speed")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    res = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    for label in args.labels:
        ref = args.before if label == "before" else args.after
        if ref is None:
            raise SystemExit("--before REF is needed to time the 'before' tree")
        src, rev = source_tree(ref, work)
        if res.get(label) not in (None, rev):  # another revision under this label: its times are void
            res["runs"] = {k: v for k, v in res["runs"].items() if not k.startswith(f"{label}/")}
        res[label] = rev
        for command in args.commands:
            key = f"{label}/{command}"
            if key in res["runs"]:
                continue
            print(f"{key} ...", flush=True)
            run = time_command(command, src, work / label / command.replace(" ", "_"))
            res["runs"][key] = {"revision": rev, **run}
            res |= machine_info()
            write_results(RESULTS, res)
            print(f"{key}: {res['runs'][key]['wall_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
