"""``modelmine <command> --out DIR [--config FILE] [--set key=value ...] [command flags]``.

``COMMANDS`` is a plain dict: command -> where its config schema and ``run(cfg, out)`` live.
Modules are imported only when their command runs, so ``modelmine --help`` stays fast. Command
flags such as ``--teacher PATH`` are shorthands for ``--set`` keys. User mistakes
(:class:`~modelmine.errors.UserError`) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class Command:
    module: str  # where the config schema and run function live
    config: str  # name of the config dataclass in that module
    run: str  # name of the function run(cfg, out: Path) -> dict of metrics
    help: str
    flags: dict[str, str] = field(default_factory=dict)  # --flag -> config key
    # splits its work across the processes of `accelerate launch` (modelmine.distributed); the
    # other commands run on the main process only while the rest wait
    sharded: bool = False


COMMANDS: dict[str, Command] = {
    "teacher": Command(
        "modelmine.classifiers", "TeacherRunConfig", "run_teacher",
        "train the default teacher classifier (or one on --data) and report teacher_acc",
        {"data": "data", "test-data": "test_data", "preset": "teacher.preset"},
    ),
    "cake": Command(
        "modelmine.methods.cake", "CakeConfig", "run",
        "CAKE: model-agnostic data-free distillation (any differentiable teacher) and student accuracy",
        {"teacher": "teacher.path", "data": "test_data", "preset": "teacher.preset"},
        sharded=True,
    ),
    "deepinversion": Command(
        "modelmine.methods.deepinversion", "DeepInversionConfig", "run",
        "DeepInversion: data-free distillation from a BatchNorm teacher's statistics (CAKE's baseline)",
        {"teacher": "teacher.path", "data": "test_data", "preset": "teacher.preset"},
        sharded=True,
    ),
    "tckr": Command(
        "modelmine.methods.tckr", "TckrConfig", "run",
        "TCKR: private data -> captions -> LoRA -> synthetic dataset -> KD student; accuracy and LiRA AUC",
        {"data": "data", "test-data": "test_data", "generator": "generator", "cardinality": "cardinality",
         "teacher": "teacher.path", "shadows": "num_shadows"},
        sharded=True,
    ),
    "ddis": Command(
        "modelmine.methods.ddis", "DdisConfig", "run",
        "DDIS: data-free synthesis with a generator steered by a BatchNorm teacher (DAG + CAT); FID and student accuracy",
        {"teacher": "teacher.path", "data": "test_data", "generator": "generator", "preset": "teacher.preset"},
        sharded=True,
    ),
    "audit lira": Command(
        "modelmine.audit.lira", "LiraConfig", "run",
        "LiRA membership inference on a classifier with shadow models; AUC and TPR at low FPR",
        {"target": "target", "population": "population", "members": "members", "shadows": "num_shadows"},
        sharded=True,
    ),
    "extract": Command(
        "modelmine.methods.finextract", "ExtractConfig", "run",
        "FineXtract: extract a fine-tuned generator's training images with model guidance; success rate vs CFG",
        {"base": "base", "finetuned": "finetuned", "data": "data", "heldout-data": "heldout_data",
         "prompt": "prompt"},
        sharded=True,
    ),
    "audit generator": Command(
        "modelmine.audit.generator", "AuditGeneratorConfig", "run",
        "FineXtract on the LoRA generator of a TCKR run: how many private training images it leaks",
        {"run": "run"},
        sharded=True,
    ),
    "pretrain": Command(
        "modelmine.diffusion.pretrain", "PretrainConfig", "run",
        "pretrain the embedded tiny text-to-image generator on public glyphs; report cas_public/cas_private",
        {"steps": "steps"},
    ),
    "finetune": Command(
        "modelmine.diffusion.finetune", "FinetuneConfig", "run",
        "fine-tune a generator (LoRA or full) on an ImageFolder with captions",
        {"data": "data", "generator": "generator", "mode": "mode"},
    ),
    "bench": Command(
        "modelmine.bench", "BenchConfig", "run",
        "run every method on the embedded default and write one markdown table (DIR/table.md)",
        {"methods": "methods"},
        sharded=True,
    ),
}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelmine",
        description="Move knowledge between models and data, and audit what leaks.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, cmd in COMMANDS.items():
        words = name.split()
        parent = sub
        if len(words) == 2:  # two-word commands, e.g. "audit lira"
            if words[0] not in groups:
                gp = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            parent = groups[words[0]]
        sp = parent.add_parser(words[-1], help=cmd.help, description=cmd.help)
        sp.add_argument("--out", required=True, help="run folder (created; an existing one resumes)")
        sp.add_argument("--config", help="YAML file of config overrides")
        sp.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key"
        )
        for flag, key in cmd.flags.items():
            sp.add_argument(
                f"--{flag}", dest=f"flag_{key}", nargs="+", metavar="VALUE", help=f"same as --set {key}=VALUE"
            )
        sp.set_defaults(_command=name)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error)."""
    import yaml

    from .config import load_config, merge_dicts, nest, parse_set
    from .distributed import processes

    parser = _parser()
    args = parser.parse_args(argv)
    name = getattr(args, "_command", None)
    if name is None:
        parser.print_help()
        return 0 if args.command is None else 2
    cmd = COMMANDS[name]
    try:
        overrides = parse_set(args.set)
        for key, value in vars(args).items():
            if key.startswith("flag_") and value is not None:
                vals = [yaml.safe_load(v) for v in value]
                overrides = merge_dicts(
                    overrides, nest(key[len("flag_") :], vals[0] if len(vals) == 1 else vals)
                )
        module = importlib.import_module(cmd.module)
        cfg = load_config(getattr(module, cmd.config), args.config, overrides)
        procs = processes()  # one, unless started by `accelerate launch` (modelmine.distributed)
        if procs.count > 1 and not cmd.sharded:
            metrics = procs.main_only(lambda: getattr(module, cmd.run)(cfg, Path(args.out)))
        else:
            metrics = getattr(module, cmd.run)(cfg, Path(args.out))
            if cmd.sharded and metrics:  # how many processes shared the (last) invocation's work
                from .runs import Run

                metrics = Run(args.out).log_metrics(num_processes=procs.count)
    except UserError as e:
        print(f"modelmine {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"modelmine {name}: interrupted; run again with the same --out to resume", file=sys.stderr)
        return 130
    if isinstance(metrics, dict) and metrics:  # empty on the helper processes of a launch
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
        )
        print(f"{args.out}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
