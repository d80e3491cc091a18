"""Run folders: ``config.yaml``, ``metrics.json``, artefacts, and resume markers.

Every command writes into one folder given by ``--out``. Files are written atomically (temp file +
rename), so a killed run never leaves half a file behind; started again with the same folder it
skips the stages whose outputs already exist.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .config import config_to_dict, dump_config
from .errors import UserError

if TYPE_CHECKING:
    from .distributed import Processes, Shard


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: Path) -> None:
    """Rename a finished temp file into place with ordinary permissions (mkstemp makes it 0600)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


_PENDING_LOCKS: dict[Path, int | None] = {}  # run folders whose command holds (or will take) the lock
_SWEPT: set[Path] = set()  # run folders this process has cleared of stale temp files


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """While a command runs into ``folder``, the first :class:`Run` opened on it takes the folder's
    lock (:func:`acquire_lock`), so nothing is created before the command has checked its inputs;
    the lock is released when the command ends."""
    key = Path(folder).resolve()
    _PENDING_LOCKS[key] = None
    try:
        yield
    finally:
        fd = _PENDING_LOCKS.pop(key, None)
        if fd is not None:
            os.close(fd)  # releases the flock


def acquire_lock(folder: Path) -> int | None:
    """Take ``folder/.lock``, an advisory ``flock`` holding this process's pid, and return its file
    descriptor (closing it releases the lock). A second run into the same folder stops with one line;
    the operating system drops the lock of a process that dies, and a dead holder's pid is reported as
    taken over. A folder nobody can write to needs no lock (None): nothing can be written there."""
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in READ_ONLY_ERRNOS:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(
            f"{folder} is in use by another modelmine run (pid {holder}); wait for it or use another --out"
        ) from None
    old = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if old.isdigit() and int(old) != os.getpid() and not _alive(int(old)):
        print(
            f"modelmine: note: took over the lock of a stopped run (pid {old}) in {folder}", file=sys.stderr
        )
    if old != str(os.getpid()):
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _temp_file(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, named ``.<name>.<pid>.<random>.tmp`` so that
    :func:`remove_stale_temps` can tell a live writer's file from one a killed process left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: Path) -> None:
    """Delete the temp files under ``folder`` whose writer is gone (a SIGKILL or a full disk mid-write);
    those of live processes (other shards of a launch) are left alone."""
    for p in folder.rglob(".*.tmp"):
        parts = p.name.split(".")
        if len(parts) >= 4 and parts[-3].isdigit() and not _alive(int(parts[-3])):
            p.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """safetensors save through a temp file + rename."""
    path = Path(path)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(path: str | Path, obj: object) -> None:
    """``torch.save`` through a temp file + rename, for our own resume checkpoints (read back with
    ``torch.load(..., weights_only=True)``; files from others are safetensors only)."""

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a corrupt file is a UserError naming it."""
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several types for bad headers
        raise UserError(f"cannot read safetensors file {path}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the float dtypes weights may have


@dataclass
class TensorHeader:
    """What a safetensors file says about itself, read without loading a tensor: its string
    metadata and each tensor's shape and dtype name (``"F32"``, ``"I64"``, ...)."""

    metadata: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]


def read_header(path: str | Path) -> TensorHeader:
    """The header of a safetensors file (``safe_open``: nothing is loaded or built); a file that is
    missing, truncated or not safetensors is a one-line UserError naming it."""

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            slices = {k: f.get_slice(k) for k in keys}
            shapes = {k: tuple(int(d) for d in s.get_shape()) for k, s in slices.items()}
            dtypes = {k: str(s.get_dtype()) for k, s in slices.items()}
    except Exception as e:  # safetensors raises several types for bad headers
        raise UserError(f"cannot read safetensors file {path}: {_first_line(e)}") from None
    return TensorHeader(dict(meta), shapes, dtypes)


def non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, else None."""
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def _json_safe(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Run:
    """A run folder. ``Run(out, cfg)`` creates it and writes ``config.yaml``.

    Restarting with the same folder resumes: metrics already written are kept and merged, and
    ``stage(name, fn)`` returns the saved result of a finished stage instead of running it again.
    A different config in an existing folder is refused, so results never mix two settings, except
    for the ``resumable`` keys a command allows to change in place (its metrics are then cleared).
    """

    def __init__(self, out: str | Path, cfg: Any | None = None, resumable: tuple[str, ...] = ()):
        self.dir = Path(out)
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError(f"--out {self.dir} exists and is not a folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        key = self.dir.resolve()
        if key in _PENDING_LOCKS and _PENDING_LOCKS[key] is None:  # the command's own folder
            _PENDING_LOCKS[key] = acquire_lock(self.dir)
        if key not in _SWEPT:  # once per folder and process: a resume starts from whole files only
            remove_stale_temps(self.dir)
            _SWEPT.add(key)
        self.cfg = cfg
        if cfg is not None:
            self._write_config(cfg, resumable)

    def _write_config(self, cfg: Any, resumable: tuple[str, ...]) -> None:
        """``config.yaml``: written for a new run, left untouched by a resume with the same config,
        rewritten when only the key order or a ``resumable`` key differs; any other change is refused."""
        text = dump_config(cfg)
        cfg_path = self.dir / "config.yaml"
        old_text = cfg_path.read_text() if cfg_path.exists() else None
        if old_text == text:
            return
        if old_text is not None:
            old, new = yaml.safe_load(old_text) or {}, config_to_dict(cfg)
            if old != new and not self._only_changed(old, new, resumable):
                raise UserError(
                    f"{self.dir} holds a run with a different config; use a new --out or delete it"
                )
            if old != new:
                # a key the command may change in place (e.g. more reference models, which reuse the
                # trained ones): the old metrics describe the old setting and are recomputed
                self.metrics_path.unlink(missing_ok=True)
        atomic_write_text(cfg_path, text)

    @staticmethod
    def _only_changed(old: dict, new: dict, keys: tuple[str, ...]) -> bool:
        """True when the saved config ``old`` differs from ``new`` only in the top-level ``keys``."""
        return bool(keys) and {k: v for k, v in old.items() if k not in keys} == {
            k: v for k, v in new.items() if k not in keys
        }

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    # metrics -----------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.json"

    def metrics(self) -> dict:
        if self.metrics_path.exists():
            return json.loads(self.metrics_path.read_text())
        return {}

    def log_metrics(self, **values: Any) -> dict:
        """Merge flat numeric metrics into metrics.json (atomic); returns the full dict."""
        m = self.metrics()
        m.update({k: _json_safe(v) for k, v in values.items()})
        text = json.dumps(m, indent=2, sort_keys=True) + "\n"
        if self.metrics_path.exists() and self.metrics_path.read_text() == text:
            return m  # nothing new: a finished run re-invoked writes nothing
        try:
            atomic_write_text(self.metrics_path, text)
        except OSError as e:
            if e.errno not in READ_ONLY_ERRNOS or not self.metrics_path.exists():
                raise
            print(f"modelmine: note: {self.dir} is read-only; metrics.json keeps its values", file=sys.stderr)
        return m

    # resume ------------------------------------------------------------------------------
    def is_done(self, name: str) -> bool:
        return (self.dir / ".done" / name).exists()

    def mark_done(self, name: str, info: dict | None = None) -> None:
        atomic_write_text(self.dir / ".done" / name, json.dumps(info or {}))

    def done_info(self, name: str) -> dict:
        return json.loads((self.dir / ".done" / name).read_text())

    def stage(self, name: str, fn: Callable[[], dict]) -> dict:
        """Run ``fn`` once; its (JSON-able) return value is stored and returned on resume."""
        if self.is_done(name):
            return self.done_info(name)
        info = fn() or {}
        self.mark_done(name, info)
        return info


def synthesize_batches(
    run: Run,
    num_batches: int,
    make_batch: Callable[[int], dict[str, torch.Tensor]],
    folder: str = "synthesis",
    shard: Shard | None = None,
) -> list[dict[str, torch.Tensor]] | None:
    """The resumable synthesis loop every data-free method shares.

    Batch ``i`` is ``run.dir/<folder>/batch_{i:05d}.safetensors``: ``make_batch(i)`` is called only
    for batches not on disk, its tensors get a ``seconds`` entry (wall time) and are saved
    atomically, so a killed run loses at most the batch in flight. ``make_batch`` must seed batch
    ``i`` from ``i`` alone. Returns all batches, in order.

    With a ``shard`` of a multi-process launch (:mod:`modelmine.distributed`) only the batches that
    shard owns are made and ``None`` is returned: the caller waits at a barrier, then
    :func:`load_batches` reads the merged result.
    """
    sharded = shard is not None and shard.count > 1
    for i in shard.items(num_batches) if sharded else range(num_batches):
        path = run.path(folder, f"batch_{i:05d}.safetensors")
        if not path.exists():
            t0 = time.time()
            batch = make_batch(i)
            batch["seconds"] = torch.tensor(time.time() - t0)
            atomic_save_tensors(path, batch)
    return None if sharded else load_batches(run, num_batches, folder)


def load_batches(run: Run, num_batches: int, folder: str = "synthesis") -> list[dict[str, torch.Tensor]]:
    """Batches ``0 .. num_batches-1`` written by :func:`synthesize_batches`, in order; a missing batch
    is a one-line error naming it (never a silently smaller set)."""
    paths = [run.dir / folder / f"batch_{i:05d}.safetensors" for i in range(num_batches)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(
            f"{len(missing)} of {num_batches} batches missing in {run.dir / folder}, e.g. {missing[0].name}"
        )
    return [load_tensors(p) for p in paths]


SEED_STRIDE = 1_000_003  # a prime above any item count, so (seed, i) pairs never share a seed


def item_seed(seed: int, i: int, stride: int = SEED_STRIDE) -> int:
    """The seed of item ``i`` (a batch, a step, a shadow model) of a run seeded ``seed``: distinct for
    every ``(seed, i)`` with ``i < stride``. TCKR and DDIS seed their generated batches with a
    smaller stride (:data:`GENERATION_STRIDE`); changing it would redraw every run at a seed above 0."""
    return seed * stride + i


GENERATION_STRIDE = 100_003


def load_generated(
    run: Run, folder: str, num_items: int, batch_size: int, keys: tuple[str, ...] = ("images",)
) -> dict[str, Any]:
    """The one reader of generated data: ``num_items`` items made in batches of ``batch_size`` by
    :func:`synthesize_batches` under ``run.dir/folder``.

    Returns ``keys`` concatenated over the batches and cut to ``num_items`` (e.g. ``images``
    ``(num_items, C, H, W)`` as stored: uint8 or floats on 8-bit levels, see
    :func:`modelmine.data.quantize`) and ``seconds``, the summed generation time (a float).
    """
    batches = load_batches(run, math.ceil(num_items / batch_size), folder)
    out: dict[str, Any] = {k: torch.cat([b[k] for b in batches])[:num_items] for k in keys}
    out["seconds"] = sum(float(b["seconds"]) for b in batches)
    return out


def synthesize_merged(
    run: Run,
    num_batches: int,
    make_batch: Callable[[int], dict[str, torch.Tensor]],
    procs: Processes,
    folder: str = "synthesis",
) -> list[dict[str, torch.Tensor]] | None:
    """:func:`synthesize_batches` over the processes of a launch: each makes its shard, then after a
    barrier the main process gets all batches in order and the others ``None`` (their work is done)."""
    batches = synthesize_batches(run, num_batches, make_batch, folder, shard=procs.shard)
    if batches is not None:
        return batches
    procs.barrier()
    return load_batches(run, num_batches, folder) if procs.is_main else None


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Task:
    """One independent unit of work for :func:`run_tasks`: ``fn(*args)``, with ``fn`` a module-level
    function and ``args`` picklable (worker processes run it)."""

    fn: Callable[..., Any]
    args: tuple = ()

    def __call__(self) -> Any:
        return self.fn(*self.args)


def run_tasks(tasks: list[Task], workers: int = 1, threads: int = 1) -> list:
    """Run independent tasks and return their results in order.

    ``workers <= 1`` runs them here, one after the other. Otherwise a pool of ``workers`` spawned
    processes (``threads`` torch threads each) takes them in the given order, so put the longest
    first. Tiny models use a CPU core best as separate one-thread processes, not as one process
    with more threads. Tasks must be module-level functions with picklable arguments, and must
    write their own results to disk (so a killed run resumes); the first failure is re-raised.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(task.fn, *task.args) for task in tasks]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def run_phase(
    procs: Processes,
    main_tasks: list[Task],
    shared_tasks: list[Task],
    workers: int = 1,
    threads: int = 1,
) -> list:
    """One phase of a command over the processes of a launch (:mod:`modelmine.distributed`).

    ``main_tasks`` (fine-tuning, teachers, tokens: work done once) run on the main process only;
    ``shared_tasks`` (each built with this process's ``procs.shard``) on every process; both in one
    :func:`run_tasks` pool, main tasks first. Then every process waits at a barrier, so the next
    phase sees every file. Returns the results of ``main_tasks`` (an empty list on other processes).
    """
    mine = main_tasks if procs.is_main else []
    results = run_tasks(mine + shared_tasks, workers, threads)
    procs.barrier()
    return results[: len(mine)]
