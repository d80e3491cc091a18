"""A run killed with SIGKILL mid-synthesis resumes to exactly the output of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from _tiny import TINY_DATA_FREE_ARGS
from modelmine.runs import load_tensors

NUM_BATCHES = 30


def _args(out):
    tiny = [
        a if not a.startswith("num_batches=") else f"num_batches={NUM_BATCHES}" for a in TINY_DATA_FREE_ARGS
    ]
    return [sys.executable, "-m", "modelmine.cli", "cake", "--out", str(out), *tiny]


def _batches(out):
    return {p.name: load_tensors(p) for p in sorted((out / "synthesis").glob("batch_*.safetensors"))}


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_args(ref), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_args(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((killed / "synthesis").glob("batch_*.safetensors"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (killed / "synthesis").glob("batch_*.safetensors")}
    assert 3 <= len(before) < NUM_BATCHES, "the kill should land mid-synthesis"

    subprocess.run(_args(killed), check=True, env=env, capture_output=True)
    after = {p.name: p.stat().st_mtime_ns for p in (killed / "synthesis").glob("batch_*.safetensors")}
    assert len(after) == NUM_BATCHES
    assert all(after[n] == t for n, t in before.items())  # nothing written before the kill was redone
    assert not list(killed.rglob("*.tmp"))  # no half-written file left behind
    ref_b, got_b = _batches(ref), _batches(killed)
    assert ref_b.keys() == got_b.keys()
    for name in ref_b:
        for k in ("images", "probs", "targets"):
            assert torch.equal(ref_b[name][k], got_b[name][k]), (name, k)
    m_ref = json.loads((ref / "metrics.json").read_text())
    m_got = json.loads((killed / "metrics.json").read_text())
    assert m_got["student_acc"] == m_ref["student_acc"] and m_got["num_samples"] == m_ref["num_samples"]
