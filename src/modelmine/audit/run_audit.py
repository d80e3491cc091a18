"""``modelmine audit run``: every audit of a TCKR run folder, in one report.

A TCKR run already scored its teacher and every student with LiRA (four variants) and RMIA from one
set of shadow models (``RUN/lira/<target>_scores.safetensors``, the population in ``split.json``
order: members, then non-members). This command reads those scores, adds for each target the
report of :mod:`modelmine.audit.privacy_report` (every attack's AUC and TPR at low FPR, the AUC per
true class, the empirical epsilon lower bound of the headline LiRA variant, a log-log ROC) and, with
``generator_audit``, runs ``audit generator`` on the run's LoRA (FineXtract and the membership
attacks of :mod:`modelmine.audit.diffusion_mia`, in ``OUT/generator/``). Writes ``report.md``,
``report.html`` (self-contained) and ``metrics.json`` (``<target>_auc``, ``<target>_eps_lower_bound``
per target, ``lora_*`` from the generator audit). Only TCKR runs are read: DDIS and CAKE runs keep no
member split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import read_yaml_mapping
from ..data import load_described
from ..errors import UserError
from ..metrics import roc_auc, roc_curve
from ..report import plot_roc
from ..runs import Run, load_tensors
from . import generator
from .generator import AuditGeneratorConfig, read_tckr_run
from .lira import headline_variant
from .privacy_report import DELTA, Section, image_section, target_section, write_report


@dataclass
class AuditRunConfig(AuditGeneratorConfig):
    """`modelmine audit run`: the TCKR run's teacher and students (membership) and LoRA, one report."""

    generator_audit: bool = True  # also `audit generator` on the LoRA (extraction and membership)


def read_targets(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{target: scores}`` of the run's ``lira/*_scores.safetensors`` (LiRA variants prefixed
    ``lira_``, RMIA's ``rmia_``, and ``is_member``)."""
    files = sorted((run_dir / "lira").glob("*_scores.safetensors"))
    if not files:
        raise UserError(f"{run_dir} has no lira/*_scores.safetensors: not a finished TCKR run")
    out = {}
    for f in files:
        t = load_tensors(f)
        out[f.name.removesuffix("_scores.safetensors")] = {
            (k if k.startswith("rmia_") or k == "is_member" else f"lira_{k}"): v for k, v in t.items()
        }
    return out


def population_labels(split: dict) -> tuple[torch.Tensor, list[str]]:
    """The labels ``(N,)`` of the run's population (members, then non-members) and the class names."""
    members, nonmembers = (load_described(split[k], 8, 1) for k in ("members", "nonmembers"))
    return torch.cat([members.labels, nonmembers.labels]), list(members.class_names)


def generator_section(m: dict, folder: Path) -> Section:
    """The LoRA's audit: extraction and membership numbers, and its leaks figure."""
    keys = ("leaked_images", "success_rate", "calibrated_success_rate", "mia_loss_auc", "mia_pia_auc",
            "mia_loss_tpr_at_1pct_fpr", "mia_pia_tpr_at_1pct_fpr")  # fmt: skip
    text = "; ".join(f"{k} {m[k]:.3g}" for k in keys if k in m)
    return image_section(
        "The LoRA generator", f"{text} (details: generator/metrics.json).", folder / "leaks.png"
    )


def run(cfg: AuditRunConfig, out: Path) -> dict:
    """Every audit of ``cfg.run``; ``report.md``, ``report.html``, ``roc_<target>.png``, ``metrics.json``."""
    if cfg.run is None:
        raise UserError("give the TCKR run folder: --run DIR")
    run_dir = Path(cfg.run)
    _, _, split, _ = read_tckr_run(run_dir)
    targets = read_targets(run_dir)
    tcfg = read_yaml_mapping(run_dir / "config.yaml", "TCKR config")
    headline = "lira_" + headline_variant(int(tcfg.get("num_shadows", 16)), tcfg.get("fix_variance"))
    labels, names = population_labels(split)
    run_ = Run(out, cfg)
    sections, metrics = [], {}
    for name, scores in targets.items():
        is_member = scores.pop("is_member").bool()
        if len(is_member) != len(labels):
            raise UserError(f"{run_dir}/lira/{name}_scores.safetensors does not match split.json")
        png = run_.path(f"roc_{name}.png")
        plot_roc(png, {k: roc_curve(v, is_member) for k, v in scores.items()}, name)
        sec = target_section(name, scores, is_member, labels, names, headline, png)
        sections.append(sec)
        metrics |= {f"{name}_auc": roc_auc(scores[headline], is_member)}
        metrics |= {f"{name}_eps_lower_bound": sec.numbers["eps_lower_bound"]}
    if cfg.generator_audit:
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(AuditGeneratorConfig)}
        g = generator.run(AuditGeneratorConfig(**fields), out / "generator")
        sections.append(generator_section(g, out / "generator"))
        metrics |= {f"lora_{k}": v for k, v in g.items() if isinstance(v, int | float)}
    intro = f"TCKR run {run_dir}: every target against the same members and non-members (split.json)."
    write_report(out, "Audit of a TCKR run", intro, sections)
    return run_.log_metrics(**metrics, eps_delta=DELTA)
