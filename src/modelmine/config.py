"""Dataclass configs: one schema holds every default, YAML files hold only overrides.

- ``load_config(Schema, path, overrides)`` builds a config from the schema's defaults, then a YAML
  file (YAML 1.2 core schema, :class:`SafeLoader12`, never building objects; nested mappings for
  nested dataclasses), then ``key.sub=value`` strings from ``--set`` and command flags. Those arrive
  as :class:`Raw` strings and are read as the type of their key, so a path stays what was typed;
  only list and mapping keys parse them as YAML. Unknown keys are an error, values are checked
  against the field's type, and every value and message is bounded in size.
- ``config_to_dict`` / ``dump_config`` give the fully resolved config, written to ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")

MAX_VALUE_CHARS = 4096  # any one value; a longer one is refused, not printed
MAX_CONFIG_BYTES = 1 << 20  # a --config file
MAX_ALIASES = 64  # YAML aliases in one document: a few nested anchors can expand to gigabytes


class Raw(str):
    """A value typed on the command line: read as the type of its config key by :func:`_coerce`
    (a path stays the string typed; ``010`` is ten where the key is a number), never as YAML 1.1.
    Only list and mapping keys parse it, as YAML 1.2 (:class:`SafeLoader12`)."""


_REPR = reprlib.Repr()  # Python 3.11 takes no keyword arguments here
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 6
_REPR.maxstring = _REPR.maxother = 200


def short(value: Any, limit: int = 200) -> str:
    """A bounded ``repr(value)`` of at most ``limit`` characters, for one-line error messages (a list
    whose aliases expand to billions of items is not walked)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SafeLoader12(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 core scalars (no octal ``010``, no ``yes``/``no``/``on``
    booleans, no sexagesimal numbers or timestamps) and at most :data:`MAX_ALIASES` aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(
                    f"more than {MAX_ALIASES} aliases (anchors that expand); write the values out"
                )
        return super().compose_node(parent, index)


_DROPPED = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}
SafeLoader12.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _DROPPED]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SafeLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
SafeLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
SafeLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _int12(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.lstrip("+-").startswith(("0o", "0x")) else int(text, 10)


def _float12(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node).lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


SafeLoader12.add_constructor("tag:yaml.org,2002:int", _int12)
SafeLoader12.add_constructor("tag:yaml.org,2002:float", _float12)


def load_yaml(text: str, what: str) -> Any:
    """``text`` read with :class:`SafeLoader12`; invalid YAML is a one-line UserError about ``what``."""
    try:
        return yaml.load(text, Loader=SafeLoader12)  # noqa: S506 - a safe loader, no object tags
    except yaml.YAMLError as e:
        raise UserError(
            f"{what} is not valid YAML: {short(str(e).splitlines()[0] if str(e) else e)}"
        ) from None


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
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise UserError(
            f"config key '{key}': a value of {len(value):,} characters (at most {MAX_VALUE_CHARS:,})"
        )
    if isinstance(value, Raw):
        value = _from_command_line(value, tp, origin, args, key)
        if isinstance(value, Raw) and origin not in (typing.Union, types.UnionType):
            value = str(value)
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
        raise UserError(errors[0] if errors else f"config key '{key}': cannot be {short(value)}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            value = [value]  # `--set cardinality=2` for a list field means [2]
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"config key '{key}': {short(value)} is not one of {list(args)}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}': expected true/false, got {short(value)}")
    if tp is int:
        return _coerce_int(value, key)
    if tp is float:
        return _coerce_float(value, key)
    if tp is str:
        if value is None or isinstance(value, dict | list):
            raise UserError(f"config key '{key}': expected a string, got {short(value)}")
        return str(value)
    return value


def _from_command_line(value: Raw, tp: Any, origin: Any, args: tuple, key: str) -> Any:
    """A command-line string as the key's type: lists and mappings (and untyped keys) are YAML 1.2,
    a number is read as a number, ``null`` is None where the key allows it; a string stays as typed."""
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and value in ("null", "~"):
            return None
        return value  # each member type reads the Raw value itself
    if origin in (list, tuple, dict) or tp in (Any, dict) or dataclasses.is_dataclass(tp):
        return load_yaml(value, f"config key '{key}'")
    if tp is bool:
        return {"true": True, "false": False}.get(value.lower(), value)
    if tp in (int, float):
        try:
            return int(value, 10) if tp is int and value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:  # YAML's spellings (.inf, .nan) read as numbers; the rest fail the type check
            number = (
                load_yaml(value, f"config key '{key}'")
                if value.strip().startswith((".", "-.", "+."))
                else None
            )
            return number if isinstance(number, float) else value
    return value


def _coerce_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise UserError(f"config key '{key}': expected an integer, got {short(value)}")
    if key.split(".")[-1].endswith("seed"):
        if not -(2**63) <= value < 2**63:  # torch seeds are 64-bit
            raise UserError(f"config key '{key}': a seed must fit in 64 bits, got {short(value)}")
    elif value < 0:  # every other integer setting is a count, a size or a step number
        raise UserError(f"config key '{key}': must be >= 0, got {short(value)}")
    return value


def _coerce_float(value: Any, key: str) -> float:
    if isinstance(value, str):  # PyYAML reads "1e-3" as a string (YAML 1.1 wants "1.0e-3")
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"config key '{key}': expected a number, got {short(value)}")
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
            if isinstance(v, Raw):
                v = load_yaml(v, f"config key '{key}'")
            if not isinstance(v, dict):
                raise UserError(f"config key '{key}' is a section; give it a mapping")
            changes[k] = _apply(current, v, key + ".")
        else:
            changes[k] = _coerce(v, hints[k], key)
    return dataclasses.replace(cfg, **changes)


def parse_set(items: list[str] | tuple[str, ...]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": Raw("1")}, "c": Raw("x")}``: values stay command-line
    strings until :func:`load_config` reads each as the type of its key."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        out = merge_dicts(out, nest(key.strip(), Raw(raw)))
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
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{what} {p} is {p.stat().st_size:,} bytes; a config holds overrides (at most 1 MiB)")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"cannot read {what} {p}: {short(str(e))}") from None
    loaded = load_yaml(text, f"{what} {p}") or {}
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
