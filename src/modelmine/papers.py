"""The papers' own headline numbers: the one table that ``modelmine bench`` and RESULTS.md cite.

They come from other data, models and budgets than ours: citations for orientation, never our
measurements. Per method, ``claim`` is the sentence a section of RESULTS.md quotes and ``cell`` the
same claim shortened for the paper column of the ``modelmine bench`` table.
"""

from __future__ import annotations

from typing import NamedTuple


class Paper(NamedTuple):
    """One paper's headline number: a full sentence with its citation, and a table cell."""

    claim: str
    cell: str


PAPERS: dict[str, Paper] = {
    "cake": Paper(
        claim="CAKE (Braun et al., AISTATS 2024, arXiv:2306.02090) reports 96% student accuracy on MNIST "
        "from 256,000 synthetic samples.",
        cell="96% on MNIST (256k samples)",
    ),
    "tckr": Paper(
        claim="TCKR (Resmini et al., 2025, arXiv:2504.04582) reports students on par with their teachers "
        "and a LiRA AUC 5.49 points lower on average.",
        cell="acc on par with teacher; AUC -5.49 pts",
    ),
    "ddis": Paper(
        claim="DDIS (arXiv:2506.15381) reports DAG + CAT as the best variant of its ablation.",
        cell="DAG + CAT best in the ablation",
    ),
    "extract": Paper(
        claim="FineXtract (Wu et al., 2024, arXiv:2410.03039) reports about 20% of the fine-tuning images "
        "extracted from Stable Diffusion, above the CFG baseline.",
        cell="about 20% extracted, above CFG",
    ),
}


def paper_cell(method: str) -> str:
    """The paper column's cell for ``method`` ("-" for a method with no paper number of its own)."""
    return PAPERS[method].cell if method in PAPERS else "-"
