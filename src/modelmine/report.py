"""Plots and tables: sample grids, ROC curves, trade-off plots, markdown tables."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from .data import to_uint8
from .runs import atomic_write_bytes


def save_grid(
    path: str | Path, images: torch.Tensor, nrow: int | None = None, scale: int = 4, pad: int = 1
) -> None:
    """Save images ``(N, C, H, W)`` in [0, 1] as one PNG grid, ``nrow`` per row, upscaled ``scale``x."""

    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    a = to_uint8(images)
    if c == 1:
        a = np.repeat(a[..., None], 3, axis=-1)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 64, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w
        ] = a[i]
    im = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


# A class grid shows the first this many classes (one column each): enough to judge the samples,
# small enough to stay legible with hundreds of classes.
GRID_MAX_CLASSES = 16


def class_grid_index(targets: torch.Tensor, rows: int = 8) -> tuple[torch.Tensor, int]:
    """Indices of a sample grid with one column per class, from the classes ``targets`` ``(N,)``:
    the first :data:`GRID_MAX_CLASSES` classes that occur, each with as many samples (up to
    ``rows``) as the rarest of them has, row-major. Returns ``(index (rows * columns,), columns)``
    for ``save_grid(path, images[index], nrow=columns)``."""
    classes = targets.unique()[:GRID_MAX_CLASSES]  # sorted
    if len(classes) == 0:
        return torch.zeros(0, dtype=torch.long), 1
    m = min(rows, int(torch.bincount(targets)[classes].min()))
    picks = torch.stack([torch.nonzero(targets == c).squeeze(1)[:m] for c in classes.tolist()], 1)  # (m, K)
    return picks.flatten(), len(classes)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts -> a GitHub markdown table (floats to 4 significant digits)."""
    if not rows:
        return ""
    cols = columns or list(rows[0])

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, imported on first use: pyplot costs about a
    second and most commands never plot."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> None:
    """Log-log ROC curves (the LiRA convention: low-FPR behaviour is what matters) as a PNG."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (fpr, tpr) in curves.items():
        auc = float(np.trapezoid(tpr, fpr))
        ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=f"{name} (AUC {auc:.3f})")
    ax.plot([1e-4, 1], [1e-4, 1], "k--", lw=0.8, label="chance")
    ax.set(
        xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="FPR", ylabel="TPR", title=title
    )
    ax.legend(fontsize=7, loc="lower right")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_decision_boundary(
    path: str | Path,
    predict_proba,
    points: torch.Tensor,
    labels: torch.Tensor,
    samples: torch.Tensor | None = None,
    sample_labels: torch.Tensor | None = None,
    title: str = "",
    resolution: int = 200,
) -> None:
    """2-D decision boundary plot: ``predict_proba((M, 2)) -> (M, K)`` on a grid, data and samples.

    ``points`` ``(N, 2)`` with ``labels`` ``(N,)`` are drawn faintly; ``samples`` ``(S, 2)`` (e.g.
    synthetic ones) as large outlined markers coloured by ``sample_labels``.
    """
    plt = _pyplot()

    every = points if samples is None else torch.cat([points, samples])
    lo, hi = every.min(0).values, every.max(0).values
    pad = 0.1 * (hi - lo)
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), resolution)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), resolution)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        p = predict_proba(torch.stack([gx.flatten(), gy.flatten()], 1))
    z = p[:, 1] if p.shape[1] == 2 else p.argmax(1).float()
    fig, ax = plt.subplots(figsize=(6, 5))
    cs = ax.contourf(gx, gy, z.view(resolution, resolution), levels=20, cmap="RdBu_r", alpha=0.6)
    if p.shape[1] == 2:
        ax.contour(gx, gy, z.view(resolution, resolution), levels=[0.5], colors="k", linewidths=1.5)
    fig.colorbar(cs, ax=ax, label="teacher p(class 1)" if p.shape[1] == 2 else "teacher argmax")
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="RdBu_r", s=6, alpha=0.35, label="private data")
    if samples is not None:
        ax.scatter(
            samples[:, 0], samples[:, 1], c=sample_labels, cmap="RdBu_r", s=28, edgecolors="k",
            linewidths=0.8, label="synthetic samples",
        )  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_tradeoff(path: str | Path, points: list[tuple[str, float, float]], title: str = "") -> None:
    """Accuracy (y) against membership-inference AUC (x) for labelled models ``(name, auc, acc)``:
    up and to the left is better (TCKR's Figure 5)."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    students = [(n, a, c) for n, a, c in points if not n.startswith("teacher")]
    if len(students) > 1:
        ax.plot([a for _, a, _ in students], [c for _, _, c in students], "-", color="tab:blue", lw=1)
    for name, auc, acc in points:
        is_teacher = name.startswith("teacher")
        ax.plot(auc, acc, "s" if is_teacher else "o", color="tab:red" if is_teacher else "tab:blue")
        ax.annotate(name, (auc, acc), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axvline(0.5, color="k", ls="--", lw=0.8)
    ax.set(xlabel="LiRA AUC (0.5 = chance)", ylabel="test accuracy", title=title)
    ax.margins(0.15)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
