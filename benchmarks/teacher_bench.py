"""Default teacher on the private digits: test accuracy and CPU training time over seeds.

    python benchmarks/teacher_bench.py [--seeds 0 1 2] [--threads 2]

Writes benchmarks/results/teacher.json. Target (issue 2): >= 0.97 test accuracy in under a minute.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from modelmine.classifiers import build_classifier, evaluate, train_classifier
from modelmine.data import load_digits
from modelmine.teacher import TeacherConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "teacher.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TeacherConfig()
    train, test = load_digits("train"), load_digits("test")
    rows = []
    for seed in args.seeds:
        model = build_classifier(cfg.preset, 10, 1, cfg.image_size)
        t0 = time.perf_counter()
        train_classifier(
            model, train.images, train.labels, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay, augment=cfg.augment, seed=seed,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        rows.append(
            {"seed": seed, "teacher_acc": evaluate(model, test.images, test.labels), "train_seconds": seconds}
        )
        print(rows[-1])
    accs = [r["teacher_acc"] for r in rows]
    result = {
        "preset": cfg.preset,
        "epochs": cfg.epochs,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "runs": rows,
        "teacher_acc_mean": sum(accs) / len(accs),
        "teacher_acc_min": min(accs),
        "train_seconds_max": max(r["train_seconds"] for r in rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))


if __name__ == "__main__":
    main()
