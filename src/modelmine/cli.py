"""``modelmine <command> --out DIR [--config FILE] [--set key=value ...] [command flags]``.

The commands are the table in :mod:`modelmine.commands` (plus ``bench``, which runs that table).
Command flags such as ``--teacher PATH`` are shorthands for ``--set`` keys; a flag takes one VALUE
unless its config key holds a list (``--cardinality 0.5 1 2``). User mistakes
(:class:`~modelmine.errors.UserError`) and file-system faults a user can fix (:data:`FS_FIXES`) print
one line on stderr and exit with status 2; SIGINT exits 130 and SIGTERM 143, each with the hint to
resume with the same ``--out``.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from pathlib import Path

from .commands import COMMANDS, run_command
from .config import Raw, is_list_key, load_config, merge_dicts, nest, parse_set, short
from .errors import UserError


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _chosen(argv: list[str]) -> str | None:
    """The command named by the first words of ``argv`` (before any option), if any."""
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    for n in (2, 1):
        if " ".join(words[:n]) in COMMANDS:
            return " ".join(words[:n])
    return None


def _parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the ``chosen`` command gets its flags (and imports its module)."""
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
        for flag, key in cmd.flags.items() if name == chosen else ():
            many = is_list_key(cmd.config, key)
            sp.add_argument(
                f"--{flag}", dest=f"flag_{key}", nargs="+" if many else None, metavar="VALUE",
                help=f"same as --set {key}=VALUE" + (" (one or more values)" if many else ""),
            )  # fmt: skip
        sp.set_defaults(_command=name)
    return p


def _overrides(args: argparse.Namespace) -> dict:
    """``--set`` items, then the command's flags, as one nested dict of config overrides."""
    overrides = parse_set(args.set)
    for key, value in vars(args).items():
        if key.startswith("flag_") and value is not None:
            parsed = [Raw(v) for v in value] if isinstance(value, list) else Raw(value)
            overrides = merge_dicts(overrides, nest(key[len("flag_") :], parsed))
    return overrides


# file-system faults a user can fix: errno -> what to do
FS_FIXES = {
    errno.EACCES: "the folder is not writable: choose another --out or fix its permissions",
    errno.EPERM: "the folder is not writable: choose another --out or fix its permissions",
    errno.EROFS: "the file system is read-only: choose another --out",
    errno.ENOSPC: "the disk is full: free space, then run again with the same --out to resume",
    errno.EDQUOT: "the disk quota is used up: free space, then run again with the same --out to resume",
    errno.ENAMETOOLONG: "a name is longer than the file system allows: use a shorter --out",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another --out",
    errno.EISDIR: "a folder stands where a file is to be written: choose another --out",
    errno.EEXIST: "a file stands where a folder is to be made: choose another --out",
}
MAX_ERROR_CHARS = 1000


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as an interrupt: the run stops between writes and resumes later."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _fs_message(e: OSError) -> str:
    where = short(str(e.filename), 300) if e.filename else "a file"
    return f"cannot write {where}: {e.strerror}; {FS_FIXES[e.errno]}"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error, 130/143 interrupted/terminated)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser(_chosen(argv))
    args = parser.parse_args(argv)
    name = getattr(args, "_command", None)
    if name is None:
        parser.print_help()
        return 0 if args.command is None else 2
    cmd = COMMANDS[name]
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        cfg = load_config(cmd.config, args.config, _overrides(args))
        metrics = run_command(cmd, cfg, Path(args.out))
    except UserError as e:
        print(_one_line(f"modelmine {name}: error: {e}"), file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in FS_FIXES:
            raise
        print(_one_line(f"modelmine {name}: error: {_fs_message(e)}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"modelmine {name}: {what}; run again with the same --out to resume", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if metrics:  # empty on the helper processes of a launch
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
        )
        print(f"{args.out}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
