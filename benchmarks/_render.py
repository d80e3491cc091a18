"""What every section of RESULTS.md is made of: the results folder and the formatting helpers.

``Results`` reads the JSON files of benchmarks/results/ and remembers which a section has read (the
rest are listed at the end of RESULTS.md); the functions turn numbers and machine records into
markdown fragments, each a list of lines, so that a section is the sum of its fragments.
"""

from __future__ import annotations

import json
from pathlib import Path


class Results:
    """The JSON files of benchmarks/results/, and which of them a section has read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()

    def get(self, name: str) -> dict | None:
        p = self.folder / name
        if not p.exists():
            return None
        self.used.add(name)
        return json.loads(p.read_text())

    def image(self, name: str, alt: str) -> list[str]:
        """A markdown image of results/<name>, if the file exists."""
        return [f"![{alt}](results/{name})", ""] if (self.folder / name).exists() else []

    def unused(self) -> list[str]:
        """Result files no section read; ``golden.json`` pins tiny-run metrics for refactors, not results."""
        return sorted(p.name for p in self.folder.glob("*.json") if p.name not in self.used | {"golden.json"})


# --- formatting ---------------------------------------------------------------------------------


def para(*parts: str) -> list[str]:
    """One markdown paragraph (one line) from sentence fragments."""
    return [" ".join(p for p in parts if p), ""]


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def pts(a: float, b: float) -> str:
    """a - b in percentage points, signed."""
    return f"{100 * (a - b):+.1f}"


def secs(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s:.0f} s ({s / 60:.1f} min)"


def mean_sd(stat: dict, fmt: str = ".3f", pm: str = "±") -> str:
    """A summary over seeds (``_results.seed_stats``) as mean and standard deviation: "0.912 ± 0.004"."""
    return f"{stat['mean']:{fmt}} {pm} {stat['std']:{fmt}}"


def n_threads(n: int) -> str:
    return f"{n} torch thread{'s' if n != 1 else ''}"


def machine(d: dict, threads: str | None = None) -> str:
    """The machine a JSON records, in words (whichever of those keys its script wrote)."""
    parts = []
    if "cpu_count" in d:
        parts.append(f"{d['cpu_count']} CPU cores")
    if arch := d.get("machine") or d.get("cpu"):
        parts.append(str(arch))
    if "torch" in d:
        parts.append(f"torch {d['torch']}")
    if threads is None and "threads" in d:
        threads = n_threads(d["threads"])
    if threads:
        parts.append(threads)
    return ", ".join(parts) if parts else "not recorded in the JSON"


def workers(cfg: dict) -> str:
    return f"{cfg['workers']} worker processes x {n_threads(cfg['threads'])} each"


def source(json_name: str, command: str, note: str = "") -> list[str]:
    return para(f"Source: `results/{json_name}`, written by `{command}`{note}.")


def bench_methods(r: Results) -> dict[str, dict]:
    """bench.json's flat ``<method>_<metric>`` keys, split back per method ({} without bench.json)."""
    b = r.get("bench.json")
    if b is None:
        return {}
    out = {}
    for name in b["wall_seconds"]:
        prefix = name.replace(" ", "_") + "_"
        out[name] = {k[len(prefix) :]: v for k, v in b["metrics"].items() if k.startswith(prefix)}
    if "extract" in out:
        out["extract"] = extraction_keys(out["extract"])
    return out


def extraction_keys(m: dict) -> dict:
    """FineXtract / audit generator metrics under today's names. Results from before the paper's
    fixed-threshold ``success_rate`` existed hold the non-member-calibrated rate under that name (and
    its threshold as ``success_threshold``): those become ``*calibrated_success_rate`` and
    ``calibrated_threshold``."""
    if "success_threshold" not in m or "calibrated_threshold" in m:
        return m
    renamed = {}
    for k, v in m.items():
        if k.endswith("success_rate"):
            k = k[: -len("success_rate")] + "calibrated_success_rate"
        renamed["calibrated_threshold" if k == "success_threshold" else k] = v
    return renamed


BENCH = "`modelmine bench` (the command's defaults: seed 0, default thread settings)"
