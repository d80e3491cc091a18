"""Dataclass configs: one schema holds every default, YAML files hold only overrides.

- ``load_config(Schema, path, overrides)`` builds a config from the schema's defaults, then a YAML
  file (``yaml.safe_load``; nested mappings for nested dataclasses), then ``key.sub=value`` strings
  from ``--set``. Unknown keys are an error, values are checked against the field's type.
- ``config_to_dict`` / ``dump_config`` give the fully resolved config, written to ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")


@dataclasses.dataclass
class Runtime:
    """Where a command runs (every command's config has it): ``device`` is "auto" (CUDA, then MPS,
    then the CPU) or a torch device name (:func:`modelmine.distributed.resolve_device`)."""

    device: str = "auto"


@dataclasses.dataclass
class Threads(Runtime):
    """``threads``: torch threads per process (one avoids OpenMP oversubscription of small models)."""

    threads: int = 1


@dataclasses.dataclass
class Workers(Threads):
    """``workers``: processes for a command's independent tasks (:func:`modelmine.runs.run_tasks`;
    1: every task in this process), each with ``threads`` torch threads."""

    workers: int = 2


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict of a dataclass config (tuples become lists, for YAML)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a YAML value to the annotated field type; raise UserError on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"config key '{key}': cannot be {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            value = [value]  # `--set cardinality=2` for a list field means [2]
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"config key '{key}': {value!r} is not one of {list(args)}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        return _coerce_int(value, key)
    if tp is float:
        return _coerce_float(value, key)
    if tp is str:
        if value is None or isinstance(value, dict | list):
            raise UserError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    return value


def _coerce_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise UserError(f"config key '{key}': expected an integer, got {value!r}")
    if value < 0 and not key.split(".")[-1].endswith("seed"):
        # every integer setting is a count, a size or a step number; only seeds may be negative
        raise UserError(f"config key '{key}': must be >= 0, got {value}")
    return value


def _coerce_float(value: Any, key: str) -> float:
    if isinstance(value, str):  # PyYAML reads "1e-3" as a string (YAML 1.1 wants "1.0e-3")
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"config key '{key}': expected a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if not math.isfinite(value):  # NaN or inf would only make every later number meaningless
        raise UserError(f"config key '{key}': must be a finite number, got {value}")
    return value


def _apply(cfg: Any, overrides: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for k, v in overrides.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise UserError(f"unknown config key '{key}' (known: {', '.join(sorted(names))})")
        current = getattr(cfg, k)
        if dataclasses.is_dataclass(current):
            if not isinstance(v, dict):
                raise UserError(f"config key '{key}' is a section; give it a mapping")
            changes[k] = _apply(current, v, key + ".")
        else:
            changes[k] = _coerce(v, hints[k], key)
    return dataclasses.replace(cfg, **changes)


def parse_set(items: list[str] | tuple[str, ...]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values parsed as YAML scalars/lists."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out = merge_dicts(out, nest(key.strip(), value))
    return out


def nest(key: str, value: Any) -> dict:
    """``nest("a.b", 1)`` -> ``{"a": {"b": 1}}``."""
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def merge_dicts(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file (``yaml.safe_load``, never building objects) that must hold a mapping; a missing,
    invalid or non-mapping file is a one-line UserError naming ``what`` it should be."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{what} {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{what} {p} must hold a mapping")
    return loaded


def load_config(schema: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """Defaults of ``schema`` <- YAML file at ``path`` <- ``overrides`` (nested dict)."""
    data = read_yaml_mapping(path, "config file") if path is not None else {}
    data = merge_dicts(data, overrides or {})
    return _apply(schema(), data)


def is_list_key(schema: type, key: str) -> bool:
    """Whether the (dotted) config ``key`` of ``schema`` holds a list, e.g. ``cardinality``."""
    tp: Any = schema
    for part in key.split("."):
        tp = typing.get_type_hints(tp)[part]
    args = (
        [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp)
        in (
            typing.Union,
            types.UnionType,
        )
        else [tp]
    )
    return any(typing.get_origin(a) in (list, tuple) for a in args)
