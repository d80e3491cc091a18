"""`modelmine audit membership`: every membership attack from one set of reference (shadow) models.

The reference models are trained once, like the target (its recipe, each on as many population
examples as the target's members; :func:`modelmine.audit.lira.keep_masks`), queried on the same
views, and each attack scores the target from their logits: LiRA (:mod:`modelmine.audit.lira`,
online and offline, per-example and fixed variance) and RMIA (:mod:`modelmine.audit.rmia`, online and
offline). ``metrics.json`` holds, for attack ``A`` and variant ``V``, ``A_V_auc`` and
``A_V_tpr_at_1pct_fpr`` (and ``_tpr_at_0.1pct_fpr`` with at least 1,000 non-members), plus the
headline ``A_auc``/``A_tpr_at_...``: LiRA online with the fixed variance below 64 reference models
(per-example from 64), RMIA online (offline with a single reference model, where online is not run).
``roc.png`` draws every curve; ``scores.safetensors`` and ``scores.csv`` hold every score;
``report.md`` / ``report.html`` sum the audit up with the empirical epsilon lower bound of the first
attack's headline (``eps_lower_bound``, :mod:`modelmine.audit.privacy_report`). The reference models are
files in ``shadows/`` whose masks never depend on their number, so running again in the same folder
with more (``--shadows 32``) trains only the new ones; other attacks or scoring settings
(``SCORING_KEYS``) in the same folder train nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..metrics import membership_metrics, roc_curve
from ..report import plot_roc
from ..runs import atomic_save_tensors
from . import lira, rmia
from .privacy_report import DELTA, target_section, write_report, write_scores_csv

ATTACKS = ("lira", "rmia")
# keys a later run in the same folder may change: they only select and score models, never train them
SCORING_KEYS = ("num_shadows", "attacks", "fix_variance", "rmia")
LABELS = {
    "lira_online": "LiRA online",
    "lira_online_fixed": "LiRA online, fixed var.",
    "lira_offline": "LiRA offline",
    "lira_offline_fixed": "LiRA offline, fixed var.",
    "rmia_online": "RMIA online",
    "rmia_offline": "RMIA offline",
}


@dataclass
class MembershipConfig(lira.LiraConfig):
    """`modelmine audit membership`: LiRA's sources and reference models (``num_shadows``; more in the
    same --out reuses the trained ones), and the attacks run on them."""

    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    rmia: rmia.RmiaConfig = field(default_factory=rmia.RmiaConfig)


def _check(cfg: MembershipConfig) -> list[str]:
    attacks = list(dict.fromkeys(cfg.attacks))
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise UserError(f"unknown attack '{unknown[0]}': use one or more of {', '.join(ATTACKS)}")
    if not attacks:
        raise UserError(f"--attacks needs at least one of {', '.join(ATTACKS)}")
    lira.check_num_models(
        cfg.num_shadows, attacks, " (or run --attacks rmia alone)" if "rmia" in attacks else ""
    )
    rmia.check_config(cfg.rmia)
    return attacks


def attack_scores(
    cfg: MembershipConfig, attacks: list[str], data: lira.AuditData, target_logits: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every attack's scores ``(N,)`` (``lira_<variant>``, ``rmia_<variant>``) of a target from its
    logits ``(N, A, K)`` on the audit's views, against ``data``'s reference models."""
    is_member, labels = data.is_member, data.population.labels
    scores = {}
    if "lira" in attacks:
        lira_scores = lira.score_target(target_logits, labels, data.shadow_logits, data.keep)
        scores |= {f"lira_{k}": v for k, v in lira_scores.items()}
    if "rmia" in attacks:
        variants = ("online", "offline") if cfg.num_shadows >= 2 else ("offline",)  # online: IN and OUT
        rmia_scores = rmia.score_target(
            target_logits, labels, data.shadow_logits, data.keep, ~is_member, cfg.rmia, variants
        )
        scores |= {f"rmia_{k}": v for k, v in rmia_scores.items()}
    return scores


def headline_attacks(cfg: MembershipConfig) -> dict[str, str]:
    """``{attack: its headline variant's score key}`` (module docstring)."""
    m = cfg.num_shadows
    return {
        "lira": f"lira_{lira.headline_variant(m, cfg.fix_variance)}",
        "rmia": "rmia_online" if m >= 2 else "rmia_offline",
    }


def run(cfg: MembershipConfig, out: Path) -> dict:
    """Train (or reuse) the reference models, run every attack on the target, write metrics, scores, ``roc.png``."""

    attacks = _check(cfg)
    data = lira.prepare_audit(cfg, out, resumable=SCORING_KEYS)
    if data is None:  # a helper process of a launch: its shadows are trained
        return {}
    is_member, labels, m = data.is_member, data.population.labels, cfg.num_shadows
    scores = attack_scores(cfg, attacks, data, data.target_logits)
    atomic_save_tensors(data.run.path("scores.safetensors"), {**scores, "is_member": is_member})
    fprs = lira.note_low_fpr(int((~is_member).sum()))
    headline = headline_attacks(cfg)
    metrics: dict = {}
    for attack in attacks:
        metrics |= membership_metrics(scores[headline[attack]], is_member, f"{attack}_", fprs)
    for name, sc in scores.items():
        metrics |= membership_metrics(sc, is_member, f"{name}_", fprs)
    curves = {LABELS[k]: roc_curve(v, is_member) for k, v in scores.items()}
    plot_roc(data.run.path("roc.png"), curves, "Membership inference on the target")
    pop = data.population
    files = list(pop.files) if pop.files is not None else [str(i) for i in range(len(is_member))]
    write_scores_csv(data.run.path("scores.csv"), files, is_member, scores)
    section = target_section("Target", scores, is_member, labels, list(pop.class_names), headline[attacks[0]],
                             data.run.path("roc.png"))  # fmt: skip
    write_report(data.run.dir, "Membership audit", "Scores per image: `scores.csv`.", [section])
    metrics |= {"eps_lower_bound": section.numbers["eps_lower_bound"], "eps_delta": DELTA}
    if "lira" in attacks:
        metrics["lira_headline_fixed_variance"] = int(headline["lira"] == "lira_online_fixed")
    return data.run.log_metrics(
        **metrics, num_reference_models=m, shadow_train_size=int(data.keep[0].sum()),
        num_members=int(is_member.sum()), num_nonmembers=int((~is_member).sum()),
        shadow_seconds=data.shadow_seconds,
    )  # fmt: skip
