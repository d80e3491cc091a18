"""Each method's module docstring: at most 45 lines, no history, and a defaults table whose first
column names fields of the method's config dataclass (the values live in the dataclass only)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing

import pytest

METHODS = {
    "tckr": "TckrConfig", "ddis": "DdisConfig", "cake": "CakeConfig", "finextract": "ExtractConfig",
    "deepinversion": "DeepInversionConfig",
}  # fmt: skip
HEADER = "| field | paper or official code | why ours differs |"
FIELD = re.compile(r"``([A-Za-z_][\w.]*)``")


def field_names(cls: type, prefix: str = "") -> set[str]:
    """Every dotted field path of a config dataclass, nested dataclasses included."""
    names: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names.add(prefix + f.name)
        kind = hints.get(f.name)
        if dataclasses.is_dataclass(kind):
            names |= field_names(kind, f"{prefix}{f.name}.")
    return names


def table_fields(doc: str) -> list[str]:
    """The first-column cells of the defaults table (the rows under ``HEADER``)."""
    lines = doc.splitlines()
    start = lines.index(HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_docstring_is_short_and_its_table_names_fields(name):
    module = importlib.import_module(f"modelmine.methods.{name}")
    doc = module.__doc__
    assert len(doc.strip().splitlines()) <= 45, name
    assert not re.search(r"\bcommit\b", doc), "history belongs to git"
    assert HEADER in doc, f"{name}: the defaults table starts with {HEADER!r}"
    known = field_names(getattr(module, METHODS[name]))
    cells = table_fields(doc)
    assert cells, name
    for cell in cells:
        fields = FIELD.findall(cell)
        assert fields and FIELD.sub("", cell).strip(" ,") == "", f"{name}: row {cell!r} names no field"
        missing = [f for f in fields if f not in known]
        assert not missing, f"{name}: {missing} are not fields of {METHODS[name]}"


@dataclasses.dataclass
class Inner:
    rank: int = 4


@dataclasses.dataclass
class Outer:
    lora: Inner = dataclasses.field(default_factory=Inner)
    steps: int = 1


def test_field_names_reads_nested_sections():
    assert field_names(Outer) == {"lora", "lora.rank", "steps"}
