"""The command table: ``modelmine <command>`` -> the config schema and ``run`` function of a method.

``COMMANDS`` maps each command to its :class:`Command` (the schema, the ``run(cfg, out) -> metrics``
callable, a help line, flag shorthands for ``--set`` keys). :func:`run_command` runs one under a
multi-process launch: sharded commands run on every process, the others on the main process while
the rest wait. ``cli`` parses the command line; ``bench`` runs every method through the same table.
A command's module is imported only when that command runs (or prints its own ``--help``).

Flags mean the same thing in every command: ``--data`` is the training data of the model the
command builds or audits (the private set), ``--test-data`` the real test set, ``--teacher`` a
classifier file, ``--generator`` a text-to-image model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .distributed import processes
from .runs import Run, run_lock


@dataclass(frozen=True)
class Command:
    """One command: where its config dataclass and ``run`` live, its help line and flag shorthands.

    The module is imported when ``config`` or ``run`` is first read, so ``modelmine --help`` and a
    command that needs no generator never import diffusers, transformers or peft.
    """

    target: str  # "module:ConfigClass:run_function", module relative to modelmine
    help: str
    flags: dict[str, str] = field(default_factory=dict)  # --flag -> config key
    # splits its work across the processes of `accelerate launch` (modelmine.distributed); the
    # other commands run on the main process only while the rest wait
    sharded: bool = False

    def _attr(self, i: int) -> Any:
        parts = self.target.split(":")
        return getattr(importlib.import_module(f"modelmine.{parts[0]}"), parts[i])

    @property
    def config(self) -> type:  # the config dataclass: every default of the command
        return self._attr(1)

    @property
    def run(self) -> Callable[[Any, Path], dict]:  # run(cfg, out) -> flat metrics
        return self._attr(2)


# data-free methods: --data is the private data the default teacher trains on (never seen by the method)
TEACHER_FLAGS = {
    "teacher": "teacher.path", "preset": "teacher.preset", "data": "data", "test-data": "test_data",
}  # fmt: skip

COMMANDS: dict[str, Command] = {
    "teacher": Command(
        "teacher:TeacherRunConfig:run_teacher",
        "train the default teacher classifier (or one on --data) and report teacher_acc",
        {"data": "data", "test-data": "test_data", "preset": "teacher.preset"},
    ),
    "cake": Command(
        "methods.cake:CakeConfig:run",
        "CAKE: model-agnostic data-free distillation (any differentiable teacher) and student accuracy",
        TEACHER_FLAGS, sharded=True,
    ),
    "deepinversion": Command(
        "methods.deepinversion:DeepInversionConfig:run",
        "DeepInversion: data-free distillation from a BatchNorm teacher's statistics (CAKE's baseline)",
        TEACHER_FLAGS, sharded=True,
    ),
    "tckr": Command(
        "methods.tckr:TckrConfig:run",
        "TCKR: private data -> captions -> LoRA -> synthetic dataset -> KD student; accuracy and LiRA AUC",
        {"data": "data", "test-data": "test_data", "generator": "generator", "cardinality": "cardinality",
         "teacher": "teacher.path", "shadows": "num_shadows"},
        sharded=True,
    ),
    "ddis": Command(
        "methods.ddis:DdisConfig:run",
        "DDIS: data-free synthesis with a generator steered by a BatchNorm teacher (DAG + CAT); FID and student accuracy",
        {**TEACHER_FLAGS, "generator": "generator"}, sharded=True,
    ),
    "audit lira": Command(
        "audit.lira:LiraConfig:run",
        "LiRA membership inference on a classifier with shadow models; AUC and TPR at low FPR",
        {"target": "target", "population": "population", "members": "members", "shadows": "num_shadows"},
        sharded=True,
    ),
    "audit membership": Command(
        "audit.membership:MembershipConfig:run",
        "LiRA and RMIA from one set of reference models on a classifier; AUC and TPR at low FPR per attack",
        {"target": "target", "population": "population", "members": "members", "shadows": "num_shadows",
         "attacks": "attacks"},
        sharded=True,
    ),
    "extract": Command(
        "methods.finextract:ExtractConfig:run",
        "FineXtract: extract a fine-tuned generator's training images with model guidance; success rate vs CFG",
        {"base": "base", "finetuned": "finetuned", "data": "data", "heldout-data": "heldout_data",
         "prompt": "prompt"},
        sharded=True,
    ),
    "audit generator": Command(
        "audit.generator:AuditGeneratorConfig:run",
        "FineXtract on the LoRA generator of a TCKR run: how many private training images it leaks",
        {"run": "run"}, sharded=True,
    ),
    "audit run": Command(
        "audit.run_audit:AuditRunConfig:run",
        "every audit of a run folder in one report.md / report.html: TCKR (teacher, students, LoRA), "
        "DDIS / CAKE / DeepInversion (teacher and students against the teacher's training data)",
        {"run": "run", "population": "population", "members": "members", "shadows": "num_shadows"},
    ),
    "pretrain": Command(
        "diffusion.pretrain:PretrainConfig:run",
        "pretrain the embedded tiny text-to-image generator on public glyphs; report cas_public/cas_private",
        {"steps": "steps"},
    ),
    "finetune": Command(
        "diffusion.finetune:FinetuneConfig:run",
        "fine-tune a generator (LoRA or full) on an ImageFolder with captions",
        {"data": "data", "generator": "generator", "mode": "mode"},
    ),
    "bench": Command(
        "bench:BenchConfig:run",
        "run every method on the embedded default and write one markdown table (DIR/table.md)",
        {"methods": "methods"}, sharded=True,
    ),
}  # fmt: skip


def run_command(cmd: Command, cfg: Any, out: Path) -> dict:
    """``cmd.run(cfg, out)`` on this process's share of a launch; returns the metrics (empty on the
    helper processes). Sharded commands record how many processes shared the work."""
    procs = processes()  # one, unless started by `accelerate launch` (modelmine.distributed)
    with run_lock(out) if procs.is_main else nullcontext():
        if procs.count > 1 and not cmd.sharded:
            return procs.main_only(lambda: cmd.run(cfg, out)) or {}
        metrics = cmd.run(cfg, out)
        if cmd.sharded and metrics:  # how many processes shared the (last) invocation's work
            metrics = Run(out).log_metrics(num_processes=procs.count)
    return metrics or {}
