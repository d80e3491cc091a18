"""Plots and tables: sample grids, ROC curves, trade-off plots, markdown tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import to_uint8
from .runs import atomic_write_bytes


def save_grid(
    path: str | Path, images: torch.Tensor, nrow: int | None = None, scale: int = 4, pad: int = 1
) -> None:
    """Save images ``(N, C, H, W)`` in [0, 1] as one PNG grid, ``nrow`` per row, upscaled ``scale``x."""
    import io

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


def plot_roc(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> None:
    """Log-log ROC curves (the LiRA convention: low-FPR behaviour is what matters) as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
