"""CAKE vs DeepInversion vs a real-data student on the embedded default, at one budget.

Runs ``modelmine cake`` and ``modelmine deepinversion`` in this process (``_bench.run_cli``) with
their default configs (the same synthesis budget: batches x batch size x steps, and the shared
student recipe, CAKE's with the teacher's architecture as in its official code, DeepInversion's
``cnn_small``), both distilling the same default teacher, then trains the same student on the real
private training images with the teacher's soft labels (the upper bound). Writes
``benchmarks/results/cake.json``. Usage::

    python benchmarks/cake_bench.py [--threads 1] [--work /tmp/cake_bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _bench import config, run_cli
from _results import machine_info, write_results
from modelmine.classifiers import evaluate, load_classifier, predict_logits
from modelmine.data import load_digits
from modelmine.distill import train_student


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/cake_bench")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cake.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    results: dict = {"threads": args.threads, **machine_info()}

    t0 = time.time()
    cake_cfg = config("cake")
    results["cake"] = run_cli("cake", work / "cake")
    results["cake"]["total_seconds_with_teacher_training"] = time.time() - t0

    # DeepInversion distils the very same teacher (copied, not retrained)
    (work / "deepinversion").mkdir(parents=True)
    shutil.copy(work / "cake" / "teacher.safetensors", work / "deepinversion" / "teacher.safetensors")
    t0 = time.time()
    di_cfg = config("deepinversion")
    results["deepinversion"] = run_cli("deepinversion", work / "deepinversion")
    results["deepinversion"]["total_seconds"] = time.time() - t0

    # upper bound: the same student recipe on the real private training images
    teacher, info = load_classifier(work / "cake" / "teacher.safetensors")
    train, test = load_digits("train", info.image_size), load_digits("test", info.image_size)
    s = cake_cfg.student
    t0 = time.time()
    probs = F.softmax(predict_logits(teacher, train.images), dim=1)
    student, _ = train_student(s, info, train.images, probs, seed=cake_cfg.seed)
    results["real_data_student"] = {
        "student_acc": evaluate(student, test.images, test.labels),
        "num_samples": len(train),
        "student_seconds": time.time() - t0,
    }
    results["student_preset"] = s.preset
    results["config"] = {
        "cake": {k: v for k, v in vars(cake_cfg).items() if k not in ("teacher", "student")},
        "deepinversion": {k: v for k, v in vars(di_cfg).items() if k not in ("teacher", "student")},
        "student": vars(s),
    }
    write_results(args.out, results)
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
