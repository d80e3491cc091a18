"""Sharding across processes with accelerate: 2 CPU processes over gloo give exactly the
single-process result, each process making only its own batches and shadows."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from _tiny import SMALL_UNET, TINY_DATA_FREE_ARGS
from modelmine.cli import main
from modelmine.distributed import Shard, processes
from modelmine.errors import UserError
from modelmine.runs import Run, load_batches, load_tensors, synthesize_batches

ACCELERATE = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
LAUNCH = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "modelmine"]  # fmt: skip


def _launch(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("WORLD_SIZE", None)
    res = subprocess.run(LAUNCH + args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _metrics(out) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in m.items() if "seconds" not in k and k != "num_processes"}


def test_shard_items_cover_everything_once():
    shards = [Shard(i, 3) for i in range(3)]
    items = sorted(i for s in shards for i in s.items(10))
    assert items == list(range(10))
    assert Shard(1, 3).items(10) == [1, 4, 7] and Shard(1, 3).owns(4) and not Shard(1, 3).owns(5)
    p = processes()  # not launched: one process, every barrier a no-op
    assert (p.index, p.count, p.is_main) == (0, 1, True)
    p.barrier()
    assert p.main_only(lambda: 7) == 7


def test_synthesize_batches_shard_makes_only_its_own(tmp_path):
    run_ = Run(tmp_path)
    made = []

    def make(i):
        made.append(i)
        return {"x": torch.full((2,), float(i))}

    assert synthesize_batches(run_, 5, make, shard=Shard(1, 2)) is None
    assert made == [1, 3]
    with pytest.raises(UserError, match="3 of 5 batches missing"):
        load_batches(run_, 5)
    synthesize_batches(run_, 5, make, shard=Shard(0, 2))
    assert made == [1, 3, 0, 2, 4]
    merged = synthesize_batches(run_, 5, make)  # single process: all on disk, nothing redone
    assert made == [1, 3, 0, 2, 4] and [float(b["x"][0]) for b in merged] == [0, 1, 2, 3, 4]


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate CLI not installed")
def test_cake_on_two_processes_equals_one(tmp_path):
    args = [a if not a.startswith("num_batches=") else "num_batches=5" for a in TINY_DATA_FREE_ARGS]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["cake", "--out", str(one), *args]) == 0
    res = _launch(["cake", "--out", str(two), *args])
    assert res.stdout.count(f"{two}: ") == 1  # only the main process reports
    assert json.loads((two / "metrics.json").read_text())["num_processes"] == 2
    assert _metrics(one) == _metrics(two)
    names = sorted(p.name for p in (two / "synthesis").glob("batch_*.safetensors"))
    assert names == [f"batch_{i:05d}.safetensors" for i in range(5)]
    for name in names:
        a, b = load_tensors(one / "synthesis" / name), load_tensors(two / "synthesis" / name)
        for k in ("images", "probs", "targets"):
            assert torch.equal(a[k], b[k]), (name, k)


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate CLI not installed")
def test_tckr_generation_and_shadows_on_two_processes_equal_one(tmp_path):
    from modelmine.diffusion.generator import Generator

    gen = tmp_path / "tiny_generator.safetensors"
    Generator.build_tiny(image_size=8, seed=0, unet_overrides=SMALL_UNET, text_width=32).save_embedded(gen)
    args = [
        "--generator", str(gen), "--cardinality", "0.1", "--shadows", "4", "--set", "teacher.image_size=8",
        "--set", "teacher.epochs=1", "--set", "lora.steps=2", "--set", "sample_steps=2",
        "--set", "student.epochs=1", "--set", "workers=1", "--set", "device=cpu",
    ]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["tckr", "--out", str(one), *args]) == 0
    _launch(["tckr", "--out", str(two), *args])
    assert _metrics(one) == _metrics(two)
    for folder in ("generated_caption", "generated_fixed", "shadows"):
        names = sorted(p.name for p in (one / folder).glob("*.safetensors"))
        assert names and names == sorted(p.name for p in (two / folder).glob("*.safetensors"))
        for name in names:
            a, b = load_tensors(one / folder / name), load_tensors(two / folder / name)
            assert all(torch.equal(a[k], b[k]) for k in a if k != "seconds"), (folder, name)


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate CLI not installed")
def test_audit_membership_shadows_on_two_processes_equal_one(tmp_path):
    args = ["--shadows", "3", "--set", "teacher.epochs=1", "--set", "teacher.preset=mlp",
            "--set", "teacher.image_size=8", "--set", "device=cpu"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["audit", "membership", "--out", str(one), *args]) == 0
    _launch(["audit", "membership", "--out", str(two), *args])
    assert _metrics(one) == _metrics(two)
    names = sorted(p.name for p in (one / "shadows").glob("*.safetensors"))
    assert len(names) == 3 and names == sorted(p.name for p in (two / "shadows").glob("*.safetensors"))
