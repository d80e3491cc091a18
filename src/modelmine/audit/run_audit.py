"""``modelmine audit run``: every audit of a TCKR run folder, in one report.

A TCKR run already scored its teacher and every student with LiRA (four variants) and RMIA from one
set of shadow models (``RUN/lira/<target>_scores.safetensors``, the population in ``split.json``
order: members, then non-members). This command reads those scores, adds for each target the
report of :mod:`modelmine.audit.privacy_report` (every attack's AUC and TPR at low FPR, the AUC per
true class, the empirical epsilon lower bound of the headline LiRA variant, a log-log ROC) and, with
``generator_audit``, runs ``audit generator`` on the run's LoRA (FineXtract and the membership
attacks of :mod:`modelmine.audit.diffusion_mia`, in ``OUT/generator/``). Writes ``report.md``,
``report.html`` (self-contained) and ``metrics.json`` (``<target>_auc``, ``<target>_eps_lower_bound``
per target, ``lora_*`` from the generator audit).

A data-free run (DDIS, CAKE, DeepInversion: no ``split.json``, no LoRA) is audited against the data
its teacher trained on: its own teacher (``teacher.safetensors``) and every student (``student``,
``students/<variant>``) are scored by LiRA and RMIA from one set of reference models trained with the
teacher's recipe (:mod:`modelmine.audit.membership`, in ``OUT/membership/``). The population is the
run's built-in ``data`` (members: its train split) when the run trained its teacher there; otherwise
the user passes it (``--population DIR --members FILE``, the teacher's training files).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..classifiers import load_classifier, taking_any_size
from ..config import read_yaml_mapping
from ..data import is_builtin, load_described
from ..distributed import resolve_device
from ..errors import UserError
from ..metrics import roc_auc, roc_curve
from ..report import plot_roc
from ..runs import Run, load_tensors
from ..teacher import TeacherConfig
from . import generator, lira, membership
from .generator import AuditGeneratorConfig, read_tckr_run
from .lira import headline_variant
from .membership import MembershipConfig
from .privacy_report import DELTA, Section, image_section, target_section, write_report


@dataclass
class AuditRunConfig(AuditGeneratorConfig):
    """`modelmine audit run`: the TCKR run's teacher and students (membership) and LoRA, one report."""

    generator_audit: bool = True  # also `audit generator` on the LoRA (extraction and membership)
    # data-free runs (DDIS, CAKE, DeepInversion): the teacher's training data, when not the run's built-in
    population: str | None = None
    members: str | None = None  # with a --population folder: the files the teacher trained on
    num_shadows: int = 16  # reference models of a data-free run's audit


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


def data_free_targets(run_dir: Path, teacher_path: str | None) -> dict[str, Path]:
    """``{name: classifier file}`` of a data-free run: its teacher and every student."""
    targets = {"teacher": Path(teacher_path) if teacher_path else run_dir / "teacher.safetensors"}
    students = [run_dir / "student.safetensors", *sorted((run_dir / "students").glob("*.safetensors"))]
    targets |= {
        ("student" if f.parent == run_dir else f"student_{f.stem}"): f for f in students if f.is_file()
    }
    if len(targets) == 1 or not targets["teacher"].is_file():
        raise UserError(
            f"{run_dir} has no teacher and student classifiers: not a finished DDIS, CAKE or TCKR run"
        )
    return targets


def audit_data_free(cfg: AuditRunConfig, run_dir: Path, out: Path) -> tuple[list[Section], dict]:
    """Membership of a data-free run's teacher and students (module docstring): report sections and
    ``<target>_auc`` / ``<target>_eps_lower_bound`` metrics."""
    rcfg = read_yaml_mapping(run_dir / "config.yaml", "run config")
    recipe = TeacherConfig(**rcfg.get("teacher") or {})
    targets = data_free_targets(run_dir, recipe.path)
    if cfg.population is None:
        if recipe.path is not None or not is_builtin(rcfg.get("data")):
            raise UserError(
                f"{run_dir}'s teacher did not train on a built-in dataset here: pass --population DIR and "
                "--members FILE (the files the teacher trained on)"
            )
        mcfg = MembershipConfig(population=rcfg["data"], num_shadows=cfg.num_shadows,
                                teacher=dataclasses.replace(recipe, path=str(targets["teacher"])))  # fmt: skip
    else:
        mcfg = MembershipConfig(target=str(targets["teacher"]), population=cfg.population,
                                members=cfg.members, num_shadows=cfg.num_shadows, teacher=recipe)  # fmt: skip
    attacks = membership.ATTACKS if cfg.num_shadows >= 2 else ("rmia",)
    data = lira.prepare_audit(mcfg, out / "membership")
    views = lira.make_views(data.population.images, mcfg.query_flip)
    headline = membership.headline_attacks(mcfg)["lira" if "lira" in attacks else "rmia"]
    labels, names = data.population.labels, list(data.population.class_names)
    sections, metrics = [], {}
    device = resolve_device(cfg.device)
    for name, path in targets.items():
        if name == "teacher":  # prepare_audit has queried it already
            logits = data.target_logits
        else:
            model, info = load_classifier(path)
            logits = lira.query_views(taking_any_size(model, info), views, device)
        scores = membership.attack_scores(mcfg, list(attacks), data, logits)
        sections.append(_target(out, name, scores, data.is_member, labels, names, headline))
        metrics |= {f"{name}_auc": roc_auc(scores[headline], data.is_member)}
        metrics |= {f"{name}_eps_lower_bound": sections[-1].numbers["eps_lower_bound"]}
    return sections, metrics


def _target(
    out: Path, name: str, scores: dict, is_member, labels, names: list[str], headline: str
) -> Section:
    """One target's report section and its ``roc_<name>.png``."""
    png = out / f"roc_{name}.png"
    plot_roc(png, {k: roc_curve(v, is_member) for k, v in scores.items()}, name)
    return target_section(name, scores, is_member, labels, names, headline, png)


def run(cfg: AuditRunConfig, out: Path) -> dict:
    """Every audit of ``cfg.run``; ``report.md``, ``report.html``, ``roc_<target>.png``, ``metrics.json``."""
    if cfg.run is None:
        raise UserError("give the run folder: --run DIR")
    run_dir = Path(cfg.run)
    if not (run_dir / "split.json").is_file() and not (run_dir / "lira").is_dir():
        run_ = Run(out, cfg)
        sections, metrics = audit_data_free(cfg, run_dir, run_.dir)
        intro = f"Run {run_dir}: its teacher and students against the teacher's training data."
        write_report(run_.dir, "Audit of a data-free run", intro, sections)
        return run_.log_metrics(**metrics, eps_delta=DELTA)
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
        sec = _target(run_.dir, name, scores, is_member, labels, names, headline)
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
