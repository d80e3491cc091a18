"""Run a method the way a user does: ``modelmine <command> --out DIR --set key=value ...``, in this process.

``run_cli(command, out, overrides)`` calls :func:`modelmine.cli.main` with one ``--set`` per override
and returns the run's ``metrics.json``; a non-zero exit status is an error. ``config(command,
overrides)`` is the config those overrides resolve to (for the results JSON). Overrides are a dict of
dotted keys (``{"teacher.seed": 1}``) or nested dicts (``{"teacher": {"seed": 1}}``); each value is
written as YAML that the CLI reads back as the same value (lists as ``[a, b]``, None as ``null``,
strings such as ``"yes"`` or ``"3"`` quoted). Further ``args`` (flags such as ``--shadows 4``) follow
the overrides on the command line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from modelmine.cli import main
from modelmine.commands import COMMANDS
from modelmine.config import load_config, load_yaml, parse_set


def _flat(overrides: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in overrides.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _cli_value(value: Any) -> str:
    """``value`` as the command line types it: a string as it is (the CLI reads it as its key's type),
    true/false, null, a number, or a one-line YAML 1.2 flow list or mapping."""
    value = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null"}[value]
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
        if load_yaml(text, "value") != value:
            raise ValueError(f"cannot pass {value!r} as one --set value")
    if "\n" in text:
        raise ValueError(f"cannot pass {value!r} as one --set value")
    return text


def sets(overrides: dict | None) -> list[str]:
    """``overrides`` as the ``key=value`` strings of ``--set``."""
    return [f"{key}={_cli_value(value)}" for key, value in _flat(overrides or {})]


def config(command: str, overrides: dict | None = None) -> Any:
    """The config dataclass that ``run_cli(command, out, overrides)`` runs with."""
    return load_config(COMMANDS[command].config, None, parse_set(sets(overrides)))


def cli_argv(command: str, out: str | Path, overrides: dict | None = None, *args: str) -> list[str]:
    """The command line of ``run_cli`` (without the program name)."""
    return [*command.split(), "--out", str(out), *(w for s in sets(overrides) for w in ("--set", s)), *args]


def run_cli(command: str, out: str | Path, overrides: dict | None = None, *args: str) -> dict:
    """``modelmine <command> --out out --set k=v ... args`` in this process; the run's metrics.json."""
    argv = cli_argv(command, out, overrides, *args)
    status = main(argv)
    if status != 0:
        raise RuntimeError(f"`modelmine {' '.join(argv)}` exited with status {status}")
    return json.loads((Path(out) / "metrics.json").read_text())
