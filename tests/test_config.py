from dataclasses import dataclass, field

import pytest

from modelmine.config import dump_config, load_config, parse_set
from modelmine.errors import UserError


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    name: str | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    flag: bool = False


def test_defaults_and_yaml_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  steps: 5\nflag: true\n")
    cfg = load_config(Outer, p)
    assert cfg.inner.steps == 5 and cfg.flag is True and cfg.inner.lr == 1e-3


def test_set_overrides_nested_and_typed():
    cfg = load_config(Outer, None, parse_set(["inner.lr=1e-2", "inner.name=abc", "sizes=[3, 4]"]))
    assert cfg.inner.lr == pytest.approx(0.01) and cfg.inner.name == "abc" and cfg.sizes == [3, 4]
    # a scalar for a list field becomes a one-element list
    assert load_config(Outer, None, parse_set(["sizes=7"])).sizes == [7]


@pytest.mark.parametrize(
    "item, message",
    [
        ("inner.bogus=1", "unknown config key 'inner.bogus'"),
        ("inner.steps=abc", "expected an integer"),
        ("flag=3", "expected true/false"),
        ("inner=3", "is a section"),
    ],
)
def test_bad_overrides_are_one_line_errors(item, message):
    with pytest.raises(UserError, match=message) as e:
        load_config(Outer, None, parse_set([item]))
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(Outer, bad)
    with pytest.raises(UserError, match="key=value"):
        parse_set(["novalue"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(Outer, None, parse_set(["inner.steps=3"]))
    p = tmp_path / "full.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(Outer, p) == cfg
