"""Smoke tests of the foundation commands through cli.main([...])."""

import dataclasses
import json
import typing

import pytest

from modelmine.cli import COMMANDS, main

TINY_TEACHER = ["--set", "teacher.epochs=1", "--set", "teacher.preset=cnn_small"]


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name.split()[0] in out


def test_teacher_writes_metrics_weights_and_config(tmp_path):
    out = tmp_path / "t"
    assert main(["teacher", "--out", str(out), *TINY_TEACHER]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["teacher_acc"] == pytest.approx(0.1111, abs=1e-4) and m["num_train"] == 1077  # 1 epoch, seeded
    assert (out / "teacher.safetensors").exists() and (out / "config.yaml").exists()
    # resuming the finished run reuses the weights and gives the same accuracy
    assert main(["teacher", "--out", str(out), *TINY_TEACHER]) == 0
    assert json.loads((out / "metrics.json").read_text())["teacher_acc"] == m["teacher_acc"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "error:" in err
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "teacher.bogus=1"], "unknown config key 'teacher.bogus'"),
        (["--set", "teacher.epochs=-x"], "expected an integer"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
        (["--data", "/nonexistent"], "data folder not found"),
        (["--set", "teacher.path=/nope.safetensors"], "classifier file not found"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    assert main(["teacher", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in _error_line(capsys)


def test_teacher_on_user_folder_and_class_mismatch(tmp_path, capsys, tiny_folder):
    root, data = tiny_folder
    out = tmp_path / "u"
    args = ["teacher", "--out", str(out), "--data", str(root), "--set", "teacher.image_size=8", *TINY_TEACHER]
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["num_train"] == 10
    # a test folder whose classes differ from the training folder's
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat" / "x.png").write_bytes((root / "cat").iterdir().__next__().read_bytes())
    assert main([*args[:2], str(tmp_path / "u2"), *args[3:], "--test-data", str(tmp_path / "test")]) == 2
    assert "classes do not match" in _error_line(capsys)


def test_changed_config_in_existing_run_is_refused(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["teacher", "--out", str(out), *TINY_TEACHER]) == 0
    assert main(["teacher", "--out", str(out), *TINY_TEACHER, "--set", "teacher.seed=1"]) == 2
    assert "different config" in _error_line(capsys)


def test_flags_take_one_value_unless_the_key_is_a_list(capsys):
    with pytest.raises(SystemExit):
        main(["tckr", "--help"])
    out = capsys.readouterr().out
    assert "--data VALUE " in out and "--data VALUE [VALUE ...]" not in out
    assert "--cardinality VALUE [VALUE ...]" in out


def test_commands_resolve_and_their_flags_name_config_keys():
    for name, cmd in COMMANDS.items():
        module = cmd.target.split(":")[0]
        assert cmd.run.__module__ == cmd.config.__module__ == f"modelmine.{module}", name
        for flag, key in cmd.flags.items():  # each flag is a shorthand for an existing config key
            parent, _, leaf = key.rpartition(".")
            section = cmd.config
            for part in filter(None, parent.split(".")):
                section = typing.get_type_hints(section)[part]
            assert leaf in {f.name for f in dataclasses.fields(section)}, (name, flag, key)
    # --data is the training data of the model being built or audited, in every command that has it
    assert all(cmd.flags.get("data") in (None, "data") for cmd in COMMANDS.values())
