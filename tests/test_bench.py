"""`modelmine bench`: methods run through their own commands into one folder and one table."""

import json

from _tiny import TINY_DATA_FREE_ARGS
from modelmine.cli import main


def test_bench_runs_methods_and_writes_table(tmp_path, capsys):
    tiny = [a for a in TINY_DATA_FREE_ARGS if a != "--set"]
    sets = [f"cake:{a}" for a in tiny] + [
        "teacher:teacher.epochs=1",
        "teacher:teacher.image_size=8",
        "teacher:device=cpu",
    ]
    args = [
        "bench",
        "--out",
        str(tmp_path / "b"),
        "--methods",
        "teacher",
        "cake",
        "--set",
        f"sets={json.dumps(sets)}",
    ]
    assert main(args) == 0
    table = (tmp_path / "b" / "table.md").read_text()
    assert "| teacher |" in table and "| cake |" in table and "96%" in table
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "cake_student_acc" in m and "teacher_teacher_acc" in m
    assert (tmp_path / "b" / "cake" / "metrics.json").is_file()
    assert main([*args[:3], "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
