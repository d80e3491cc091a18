import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from modelmine.errors import UserError
from modelmine.runs import Run, atomic_save_tensors, load_tensors


@dataclass
class Cfg:
    a: int = 1


def test_run_folder_writes_config_and_merges_metrics(tmp_path):
    run = Run(tmp_path / "r", Cfg())
    assert (tmp_path / "r" / "config.yaml").read_text().strip() == "a: 1"
    run.log_metrics(x=1.0)
    run.log_metrics(y=torch.tensor(2.0), z=float("nan"))
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m == {"x": 1.0, "y": 2.0, "z": None}


def test_resume_refuses_a_different_config(tmp_path):
    Run(tmp_path / "r", Cfg())
    Run(tmp_path / "r", Cfg())  # same config resumes
    with pytest.raises(UserError, match="different config"):
        Run(tmp_path / "r", Cfg(a=2))


@dataclass
class Cfg2:
    a: int = 1
    n: int = 2


def test_resumable_keys_change_in_place_and_clear_metrics(tmp_path):
    Run(tmp_path / "r", Cfg2()).log_metrics(x=1.0)
    Run(tmp_path / "r", Cfg2(n=4), resumable=("n",))  # e.g. more reference models: allowed
    assert "n: 4" in (tmp_path / "r" / "config.yaml").read_text()
    assert Run(tmp_path / "r").metrics() == {}  # the old metrics described n = 2
    with pytest.raises(UserError, match="different config"):
        Run(tmp_path / "r", Cfg2(a=2, n=4), resumable=("n",))
    with pytest.raises(UserError, match="different config"):
        Run(tmp_path / "r", Cfg2(n=8))  # not resumable unless the command says so


def test_stage_runs_once(tmp_path):
    run = Run(tmp_path / "r", Cfg())
    calls = []

    def work():
        calls.append(1)
        return {"n": 3}

    assert run.stage("s", work) == {"n": 3}
    assert Run(tmp_path / "r", Cfg()).stage("s", work) == {"n": 3}
    assert len(calls) == 1


def test_atomic_tensors_and_corrupt_file(tmp_path):
    atomic_save_tensors(tmp_path / "t.safetensors", {"w": torch.ones(2)})
    assert torch.equal(load_tensors(tmp_path / "t.safetensors")["w"], torch.ones(2))
    assert not list(tmp_path.glob(".*tmp"))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot read safetensors"):
        load_tensors(tmp_path / "bad.safetensors")


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from modelmine.runs import atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_save_tensors(tmp_path / "b.safetensors", {"w": torch.ones(1)})
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o644


def _square(x):
    return x * x


def test_run_tasks_in_order_inline_and_in_worker_processes():
    from modelmine.runs import Task, run_tasks

    tasks = [Task(_square, (i,)) for i in range(4)]
    assert run_tasks(tasks, workers=1) == [0, 1, 4, 9]
    assert run_tasks(tasks, workers=2) == [0, 1, 4, 9]


def test_a_resume_removes_temp_files_of_dead_writers_only(tmp_path):
    """A SIGKILL mid-write leaves ``.<name>.<pid>.<random>.tmp``; the next ``Run`` on the folder removes
    it, whatever moment the kill hit, and leaves a live writer's (another shard's) file alone."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)  # exited: no process has this pid now (short of reuse within milliseconds)
    stale = tmp_path / "synthesis" / f".batch_00003.safetensors.{pid}.k3j_x9.tmp"
    png = tmp_path / "samples" / f".000007.png.{pid}.w.tmp"
    live = tmp_path / "synthesis" / f".batch_00004.safetensors.{os.getpid()}.a1b2.tmp"
    for p in (stale, png, live):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    Run(tmp_path)
    assert not stale.exists() and not png.exists() and live.exists()
