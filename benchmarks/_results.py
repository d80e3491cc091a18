"""What every benchmark script records beside its numbers, how it sums up seeds, and how it writes them."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

import torch


def machine_info() -> dict:
    """The machine a result was measured on: core count, architecture, torch build."""
    return {"cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__}


def seed_stats(values: list[float]) -> dict:
    """Mean and sample standard deviation of one metric over seeds (standard deviation 0 for one seed)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": sd}


def write_results(path: str | Path, results: dict, *, indent: int = 2, sort_keys: bool = False) -> None:
    """``results`` as indented JSON and a newline at ``path`` (parent folders created); every script
    writes its JSON here (golden.json: ``indent=1, sort_keys=True``; lira_teacher.json: sorted keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=indent, sort_keys=sort_keys, default=str) + "\n")
