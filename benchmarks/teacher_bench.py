"""The default teacher on a built-in dataset: test accuracy and CPU training time over seeds.

    python benchmarks/teacher_bench.py [--data digits|mnist5k] [--seeds 0 1 2] [--threads 2]

Uses the settings ``modelmine teacher --data <data>`` resolves (image size and epochs derived from the
data). Writes benchmarks/results/teacher.json (digits) or teacher_<data>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from _results import write_results
from modelmine.classifiers import build_classifier, evaluate, train_classifier
from modelmine.data import load_builtin
from modelmine.teacher import TeacherRunConfig, resolve_teacher


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--note", default="", help="conditions worth knowing, e.g. a CPU shared with other jobs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    name = "teacher.json" if args.data == "digits" else f"teacher_{args.data}.json"
    out = args.out or str(Path(__file__).parent / "results" / name)
    torch.set_num_threads(args.threads)
    cfg = resolve_teacher(TeacherRunConfig(data=args.data), args.data).teacher
    train, test = (
        load_builtin(args.data, "train", cfg.image_size),
        load_builtin(args.data, "test", cfg.image_size),
    )
    rows = []
    for seed in args.seeds:
        model = build_classifier(cfg.preset, train.num_classes, train.images.shape[1], cfg.image_size)
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
        "data": args.data,
        **({"note": args.note} if args.note else {}),
        "num_train": len(train),
        "image_size": cfg.image_size,
        "preset": cfg.preset,
        "epochs": cfg.epochs,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "runs": rows,
        "teacher_acc_mean": sum(accs) / len(accs),
        "teacher_acc_min": min(accs),
        "train_seconds_max": max(r["train_seconds"] for r in rows),
    }
    write_results(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))


if __name__ == "__main__":
    main()
