"""What a hostile or unlucky user meets: flag values read literally, bounded values and messages,
file-system faults, concurrent runs and SIGTERM. Each case ends with one line and exit status 2
(or the right result), never a traceback."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _tiny import TINY_DATA_FREE_ARGS
from modelmine import runs
from modelmine.cli import main
from modelmine.commands import COMMANDS
from modelmine.config import Raw, load_config
from modelmine.teacher import TeacherRunConfig

TINY_TEACHER = ["--set", "teacher.epochs=1", "--set", "teacher.preset=mlp", "--set", "teacher.image_size=8"]


def run(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def one_line(rc: int, err: str, *words: str) -> None:
    assert rc == 2 and "\n" not in err and len(err) < 1000, (rc, err[:300])
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("typed", ["010", "yes", "1e3", "null-ish", "@t"])
def test_a_flag_value_is_the_string_typed(typed):
    assert load_config(TeacherRunConfig, None, {"data": Raw(typed)}).data == typed


def test_numbers_and_yaml_1_2(tmp_path):
    cfg = load_config(TeacherRunConfig, None, {"teacher": {"epochs": Raw("010"), "lr": Raw("1e-3")}})
    assert cfg.teacher.epochs == 10 and cfg.teacher.lr == 0.001  # decimal, never octal
    (tmp_path / "c.yaml").write_text("teacher:\n  epochs: 010\n  augment: 1\ndata: yes\n")
    cfg = load_config(TeacherRunConfig, tmp_path / "c.yaml")
    assert cfg.teacher.epochs == 10 and cfg.data == "yes"  # YAML 1.2: no octal, no yes/no booleans


@pytest.mark.parametrize(
    "argv, words",
    [
        (["teacher", "--data", "010"], ["data folder not found: 010"]),
        (["teacher", "--data", "yes"], ["data folder not found: yes"]),
        (["cake", "--teacher", "@t.safetensors"], ["@t.safetensors"]),
        (["audit", "lira", "--shadows", "["], ["num_shadows", "expected an integer"]),
        (["tckr", "--cardinality", "{"], ["cardinality"]),
        (["teacher", "--set", "teacher.seed=99999999999999999999999"], ["64 bits"]),
        (["teacher", "--set", "teacher.preset=" + "x" * 1_000_000], ["characters"]),
        (["audit", "lira", "--set", "teacher.image_size=2048"], ["GiB"]),
    ],
)
def test_bad_values_are_one_short_line(tmp_path, capsys, argv, words):
    n = 2 if argv[0] == "audit" else 1
    rc, err = run([*argv[:n], "--out", str(tmp_path / "r"), *argv[n:]], capsys)
    one_line(rc, err, *words)


def test_a_config_that_expands_is_refused_before_it_is_built(tmp_path, capsys):
    lines = ["teacher:", "  epochs:", "    - &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10^10 ones
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    t0 = time.time()
    rc, err = run(["teacher", "--out", str(tmp_path / "r"), "--config", str(bomb)], capsys)
    one_line(rc, err, "aliases")
    assert time.time() - t0 < 10
    big = tmp_path / "big.yaml"
    big.write_text("data: " + "x" * (2 << 20) + "\n")
    one_line(*run(["teacher", "--out", str(tmp_path / "r2"), "--config", str(big)], capsys), "bytes")


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "disk is full"), (errno.EACCES, "not writable"), (errno.EROFS, "read-only")],
)
def test_file_system_faults_are_one_line(tmp_path, capsys, monkeypatch, code, words):
    def fail(tmp, path):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(runs, "_publish", fail)
    rc, err = run(["teacher", "--out", str(tmp_path / "r"), *TINY_TEACHER], capsys)
    one_line(rc, err, words, str(tmp_path / "r"))
    assert not list((tmp_path / "r").rglob("*.tmp"))  # the temp file went with the failed write


def test_paths_the_file_system_refuses(tmp_path, capsys):
    one_line(*run(["teacher", "--out", str(tmp_path / ("x" * 300)), *TINY_TEACHER], capsys), "shorter")
    (tmp_path / "file").write_text("")
    one_line(
        *run(["teacher", "--out", str(tmp_path / "file" / "sub"), *TINY_TEACHER], capsys), "not a folder"
    )
    one_line(*run(["teacher", "--out", str(tmp_path / "file"), *TINY_TEACHER], capsys), "not a folder")


def test_a_finished_run_in_a_read_only_folder_reports_without_writing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert main(["teacher", "--out", str(out), *TINY_TEACHER]) == 0
    before = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))

    monkeypatch.setattr(runs, "_publish", read_only)
    monkeypatch.setattr(os, "open", lambda *a, **k: read_only())  # the lock file cannot be made either
    assert main(["teacher", "--out", str(out), *TINY_TEACHER]) == 0
    assert f"teacher_acc={before['teacher_acc']:.4g}," in capsys.readouterr().out


def test_a_second_run_into_the_same_folder_stops(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    held = runs.acquire_lock(out)  # another run holds the folder
    rc, err = run(["teacher", "--out", str(out), *TINY_TEACHER], capsys)
    os.close(held)
    one_line(rc, err, "in use by another modelmine run", str(os.getpid()))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (out / ".lock").write_text(dead.stdout.strip())  # the lock of a run that died
    assert main(["teacher", "--out", str(out), *TINY_TEACHER]) == 0
    assert "took over the lock of a stopped run" in capsys.readouterr().err


def test_sigterm_is_one_line_exit_143_and_the_run_resumes(tmp_path):
    out = tmp_path / "r"
    args = [a if not a.startswith("num_batches=") else "num_batches=30" for a in TINY_DATA_FREE_ARGS]
    cmd = [sys.executable, "-m", "modelmine.cli", "cake", "--out", str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "synthesis").glob("batch_*.safetensors")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143  # progress bars aside, the run says one thing: what to do
    assert (
        err.strip().splitlines()[-1] == "modelmine cake: terminated; run again with the same --out to resume"
    )
    assert "Traceback" not in err
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0


# ------------------------------------------------------------------------------------------------
# fuzz: any flag with any value parses to a config or to one line (the command itself is not run)
# ------------------------------------------------------------------------------------------------
FLAGS = sorted({(name, flag) for name, c in COMMANDS.items() for flag in c.flags})
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    [
        "[",
        "{",
        "010",
        "yes",
        "null",
        "~",
        "1e999",
        "-1",
        "0x1f",
        "*a",
        "&a b",
        "!!python/object:os.system",
        "[1, 2",
    ]
)


@settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
@given(
    flag=st.sampled_from(FLAGS), value=TEXT, key=st.sampled_from(["seed", "teacher.lr", "device", "workers"])
)
def test_fuzz_flags_and_set_values(tmp_path, capsys, monkeypatch, flag, value, key):
    monkeypatch.setattr("modelmine.cli.run_command", lambda cmd, cfg, out: {})
    name, option = flag
    if value.startswith("-"):
        value = " " + value  # argparse would read it as an option
    words = name.split()
    rc = main([*words, "--out", str(tmp_path / "r"), f"--{option}", value, "--set", f"{key}={value}"])
    err = capsys.readouterr().err
    assert rc in (0, 2) and all(len(line) <= 1000 for line in err.splitlines())
    if rc == 2:
        assert len(err.strip().splitlines()) == 1


def test_metadata_that_does_not_belong_to_the_weights_is_refused(tmp_path):
    """A convolutional net with global pooling loads at any size; the probe saved with the weights
    tells the stated size from the true one."""
    from safetensors.torch import load_file, save_file

    from modelmine.classifiers import ClassifierInfo, build_classifier, load_classifier, save_classifier
    from modelmine.errors import UserError
    from modelmine.runs import read_header

    path = tmp_path / "c.safetensors"
    save_classifier(
        path,
        build_classifier("cnn_small", 3, 1, 8, seed=0),
        ClassifierInfo("cnn_small", 3, 1, 8, list("abc")),
    )
    assert load_classifier(path)[1].image_size == 8
    meta = read_header(path).metadata | {"image_size": "12"}  # shape-compatible, wrong
    save_file(load_file(path), tmp_path / "lie.safetensors", metadata=meta)
    with pytest.raises(UserError, match="does not match its weights"):
        load_classifier(tmp_path / "lie.safetensors")
