"""What a membership audit hands on: every attack's rates, per-class AUC, per-sample scores, and an
empirical lower bound on the differential-privacy epsilon.

**Epsilon lower bound** (Jagielski, Ullman, Oprea, "Auditing Differentially Private Machine
Learning: How Private is Private SGD?", NeurIPS 2020). Any membership test against an
``(eps, delta)``-DP training algorithm has ``TPR <= e^eps FPR + delta`` and
``1 - FPR <= e^eps (1 - TPR) + delta``, so

    eps >= max( log((TPR - delta) / FPR), log((1 - FPR - delta) / (1 - TPR)) ).

TPR and FPR are counts over members and non-members; with the one-sided Clopper-Pearson bounds at
confidence ``1 - alpha`` (TPR's lower, FPR's upper) the right-hand side holds with that confidence.
The threshold is chosen on one seeded half of the members and of the non-members (the largest point
estimate) and the bound is computed on the other half, so the choice does not inflate it. It is a
lower bound this audit demonstrates, never a guarantee; and it treats each example's membership as
an independent trial, which holds when members are drawn at random per example (Steinke, Nasr,
Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023), only approximately for a
given training set.

Files (:func:`write_report`): ``scores.csv`` (one row per population image: file, member, every
attack's score), ``report.md`` and ``report.html`` (the same, self-contained: the ROC figure inline
as a data URL, no network access).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from scipy.stats import beta

from ..metrics import low_fpr_note, reported_fprs, roc_auc, tpr_at_fpr
from ..report import markdown_table
from ..runs import atomic_write_text

DELTA = 1e-5
ALPHA = 0.05  # one-sided, per rate: the bound holds with confidence 1 - 2 alpha at worst


def clopper_pearson(k: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds ``(lower, upper)`` of a binomial proportion ``k / n``, each at
    confidence ``1 - alpha``."""
    lo = float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(1 - alpha, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def epsilon_from_rates(tpr: float, fpr: float, delta: float = DELTA) -> float:
    """The largest epsilon the rates of one test rule out (0 when they rule out none)."""
    bounds = [0.0]
    if tpr - delta > 0 and fpr > 0:
        bounds.append(math.log((tpr - delta) / fpr))
    if 1 - fpr - delta > 0 and tpr < 1:
        bounds.append(math.log((1 - fpr - delta) / (1 - tpr)))
    return max(bounds)


def _halves(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=g)
    return perm[: n // 2], perm[n // 2 :]


def epsilon_lower_bound(
    scores: torch.Tensor, is_member: torch.Tensor, delta: float = DELTA, alpha: float = ALPHA, seed: int = 0
) -> dict[str, float]:
    """The module docstring's bound for one attack's ``scores`` ``(N,)`` (higher: more likely a
    member). Returns ``eps_lower_bound``, the ``threshold`` chosen on the first halves and the
    second halves' ``tpr``, ``fpr`` and their Clopper-Pearson ``tpr_lower`` / ``fpr_upper``."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    mem, non = s[is_member], s[~is_member]
    g = torch.Generator().manual_seed(seed)
    (mem_a, mem_b), (non_a, non_b) = _halves(len(mem), g), _halves(len(non), g)
    candidates = torch.unique(mem[mem_a])  # (T,) ascending
    tpr = (mem[mem_a][None, :] >= candidates[:, None]).double().mean(1)
    fpr = (non[non_a][None, :] >= candidates[:, None]).double().mean(1).clamp_min(1 / max(len(non_a), 1))
    point = torch.maximum(
        ((tpr - delta).clamp_min(1e-300) / fpr).log(), ((1 - fpr - delta) / (1 - tpr)).log()
    )
    threshold = float(candidates[int(point.nan_to_num(-math.inf).argmax())]) if len(candidates) else math.inf
    k1, n1 = int((mem[mem_b] >= threshold).sum()), len(mem_b)
    k0, n0 = int((non[non_b] >= threshold).sum()), len(non_b)
    tpr_lo, fpr_hi = clopper_pearson(k1, n1, alpha)[0], clopper_pearson(k0, n0, alpha)[1]
    return {
        "eps_lower_bound": epsilon_from_rates(tpr_lo, fpr_hi, delta),
        "threshold": threshold,
        "tpr": k1 / max(n1, 1),
        "fpr": k0 / max(n0, 1),
        "tpr_lower": tpr_lo,
        "fpr_upper": fpr_hi,
    }


def per_class_auc(
    scores: torch.Tensor, is_member: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> dict[str, float | None]:
    """The attack's AUC among the images of each true class (None where a class lacks members or
    non-members)."""
    out: dict[str, float | None] = {}
    for k, name in enumerate(class_names):
        sel = labels == k
        m = is_member[sel]
        out[name] = roc_auc(scores[sel], m) if bool(m.any()) and bool((~m).any()) else None
    return out


def attack_rows(
    scores: dict[str, torch.Tensor], is_member: torch.Tensor
) -> tuple[list[str], list[list[str]]]:
    """The report's attack table: header and one row per attack variant (AUC, TPR at the FPRs the
    number of non-members allows, and at 0% FPR)."""
    fprs = sorted(reported_fprs(int((~is_member).sum())), reverse=True)
    header = ["attack", "AUC", *(f"TPR at {100 * f:g}% FPR" for f in fprs), "TPR at 0% FPR"]
    rows = [
        [
            name,
            f"{roc_auc(sc, is_member):.3f}",
            *(f"{tpr_at_fpr(sc, is_member, f):.3f}" for f in [*fprs, 0.0]),
        ]
        for name, sc in scores.items()
    ]
    return header, rows


def write_scores_csv(
    path: Path, files: list[str], is_member: torch.Tensor, scores: dict[str, torch.Tensor]
) -> None:
    """``scores.csv``: ``file, member`` and one column per attack, one row per population image."""
    names = list(scores)
    cols = torch.stack([scores[n].double() for n in names], 1).tolist() if names else [[]] * len(files)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "member", *names])
    writer.writerows(
        [f, int(m), *(f"{v:.6g}" for v in row)]
        for f, m, row in zip(files, is_member.tolist(), cols, strict=True)
    )
    atomic_write_text(path, buf.getvalue())


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """:func:`modelmine.report.markdown_table` of string rows, as lines."""
    return markdown_table([dict(zip(header, r, strict=True)) for r in rows], header).splitlines()


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


@dataclass
class Section:
    """One part of a report: markdown lines, the same as HTML, and the numbers behind it."""

    md: list[str]
    html: str
    numbers: dict[str, float] = field(default_factory=dict)


def _img(png: Path, alt: str) -> str:
    """An ``<img>`` holding ``png`` itself as a data URL (nothing to fetch), empty if it is missing."""
    if not png.exists():
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'


def image_section(heading: str, text: str, png: Path) -> Section:
    """A heading, a paragraph and one figure (inline in the HTML, linked from the markdown)."""
    md = [f"## {heading}", "", text, "", f"![{heading}]({png.name})", ""]
    return Section(md, f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>{_img(png, heading)}")


def target_section(
    heading: str, scores: dict[str, torch.Tensor], is_member: torch.Tensor, labels: torch.Tensor,
    class_names: list[str], headline: str, roc_png: Path,
) -> Section:  # fmt: skip
    """The audit of one target: every attack's rates, the epsilon bound and the per-class AUC of
    ``headline``'s scores, the log-log ROC (``numbers``: :func:`epsilon_lower_bound`'s)."""
    header, rows = attack_rows(scores, is_member)
    eps = epsilon_lower_bound(scores[headline], is_member)
    per_class = per_class_auc(scores[headline], is_member, labels, class_names)
    pc_rows = [[k, "-" if v is None else f"{v:.3f}"] for k, v in per_class.items()]
    note = low_fpr_note(int((~is_member).sum()))
    intro = f"{int(is_member.sum())} members and {int((~is_member).sum())} non-members; every attack scores each image."
    bound = (
        f"Empirical epsilon lower bound (delta = {DELTA:g}, {headline}, Clopper-Pearson at {1 - ALPHA:.0%} per"
        f" rate, threshold chosen on half the points): eps >= {eps['eps_lower_bound']:.3f} (TPR {eps['tpr']:.3f},"
        f" FPR {eps['fpr']:.3f} on the other half). A lower bound this audit demonstrates, not a guarantee."
    )
    pc_text = f"AUC of {headline} per true class:"
    md = [f"## {heading}", "", intro, "", *_md_table(header, rows), "", *([note, ""] if note else [])]
    md += [bound, "", f"![ROC]({roc_png.name})", "", pc_text, "", *_md_table(["class", "AUC"], pc_rows), ""]
    page = [f"<h2>{html.escape(heading)}</h2>", f"<p>{html.escape(intro)}</p>", _html_table(header, rows)]
    page += [f"<p>{html.escape(note)}</p>"] if note else []
    page += [
        f"<p>{html.escape(bound)}</p>",
        _img(roc_png, "ROC"),
        f"<p>{html.escape(pc_text)}</p>",
        _html_table(["class", "AUC"], pc_rows),
    ]
    return Section(md, "".join(page), eps)


def write_report(out: Path, title: str, intro: str, sections: list[Section]) -> None:
    """``report.md`` and a self-contained ``report.html`` (figures inline, no network access)."""
    md = [f"# {title}", "", intro, ""] + [line for s in sections for line in s.md]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    style = "body{font-family:sans-serif;max-width:52em}td,th{padding:2px 8px;border-bottom:1px solid #ccc}"
    body = f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>" + "".join(s.html for s in sections)
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{style}</style>'
    atomic_write_text(
        out / "report.html", f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"
    )
