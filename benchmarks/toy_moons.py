"""CAKE on a 2-D toy: two moons, an MLP teacher; plot the samples on its decision boundary.

The teacher sees points as ``(B, 1, 1, 2)`` "images" scaled to [0, 1]; CAKE's synthesis
(:func:`modelmine.methods.cake.synthesize_batch`) runs unchanged with groups of ``K = 2`` (one
sample per class), no TV prior (two pixels have no neighbourhood to smooth), and the official
log-linear step-size decay over the batches. The contrastive term pulls each pair together, so the
samples settle along the decision boundary, on its correct side. Writes
``benchmarks/results/toy_moons.png`` and ``toy_moons.json``. Usage: ``python benchmarks/toy_moons.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import make_moons

from _results import write_results
from modelmine.classifiers import train_classifier
from modelmine.methods.cake import CakeConfig, step_size_schedule, synthesize_batch
from modelmine.report import save_decision_boundary

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y = make_moons(n_samples=1000, noise=0.15, random_state=0)
    x = torch.tensor(x, dtype=torch.float32)
    lo, hi = x.min(0).values, x.max(0).values
    x = 0.1 + 0.8 * (x - lo) / (hi - lo)  # into [0.1, 0.9]: CAKE samples live in [0, 1]
    y = torch.tensor(y)
    teacher = nn.Sequential(
        nn.Flatten(), nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
    )
    images = x.view(-1, 1, 1, 2)
    train_classifier(teacher, images, y, epochs=60, lr=1e-2, batch_size=64, weight_decay=0.0, augment=0.0)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher_acc = (teacher(images).argmax(1) == y).float().mean().item()

    cfg = CakeConfig(
        num_batches=8, batch_size=40, num_groups=2, num_steps=200, noise=0.3, w_cls=1.0, w_contr=1.0, w_tv=0.0,
        init_mean=0.5, init_std=0.25,
    )  # fmt: skip
    samples, targets = [], []
    for i in range(cfg.num_batches):
        eps = step_size_schedule(i, cfg.num_batches, cfg.noise, cfg.noise_decay_magnitude)
        b = synthesize_batch(
            teacher, (1, 1, 2), 2, cfg, eps, torch.Generator().manual_seed(i), torch.device("cpu")
        )
        samples.append(b["images"].view(-1, 2))
        targets.append(b["targets"])
    s, t = torch.cat(samples), torch.cat(targets)
    with torch.no_grad():
        ps = F.softmax(teacher(s.view(-1, 1, 1, 2)), 1)
    margin = (ps[:, 1] - 0.5).abs()

    def proba(points: torch.Tensor) -> torch.Tensor:
        return F.softmax(teacher(points.view(-1, 1, 1, 2)), 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    save_decision_boundary(
        RESULTS / "toy_moons.png", proba, x, y, s, ps.argmax(1),
        title=f"CAKE on two moons: {len(s)} samples from an MLP teacher (acc {teacher_acc:.2f})",
    )  # fmt: skip
    # how close to the boundary the samples are, against the private data
    with torch.no_grad():
        pd = F.softmax(teacher(images), 1)
    summary = {
        "teacher_train_acc": teacher_acc,
        "num_samples": len(s),
        "sample_target_acc": (ps.argmax(1) == t).float().mean().item(),
        "sample_median_|p-0.5|": margin.median().item(),
        "private_data_median_|p-0.5|": (pd[:, 1] - 0.5).abs().median().item(),
        "config": {k: v for k, v in vars(cfg).items() if k not in ("teacher", "student")},
    }
    write_results(RESULTS / "toy_moons.json", summary)
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
