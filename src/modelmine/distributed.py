"""Processes and devices: sharding long jobs across processes (Hugging Face accelerate), and
which device each process computes on (:func:`resolve_device`).

The same command runs in one process or in many::

    modelmine cake --out runs/cake
    accelerate launch --multi_gpu --num_processes 4 -m modelmine cake --out runs/cake

(``--multi_gpu`` selects accelerate's torchrun launcher; on a machine without CUDA the processes
talk over gloo on the CPU. ``torchrun --nproc_per_node 4 -m modelmine ...`` works too.)

How a command splits its work:

- **Once, by the main process** (teacher, captions, LoRA fine-tuning, CAT tokens): the others wait
  at a barrier and then load the result from the run folder, which they share
  (:meth:`Processes.main_first`).
- **Sharded** (synthetic batches, LiRA shadow models): item ``i`` belongs to process
  ``i % count``. Every item is its own file (``batch_00012.safetensors``, ``shadow_003.safetensors``)
  seeded by its index, not by the process, so the merged result is the same as a single-process run
  and a resumed run skips whatever any process finished. A barrier ends the phase.
- **Merged, by the main process** (students, metrics, plots): the other processes return after the
  last sharded phase.

Only the process that the launcher started talks to the process group; tasks handed to
:func:`modelmine.runs.run_tasks` worker pools get their shard as arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from .errors import UserError

T = TypeVar("T")

# A sharded command waits at barriers while the main process fine-tunes or trains a teacher; on a
# slow machine that can take hours, longer than torch's 30-minute default. A crashed process still
# ends the run at once: the launcher stops the others.
TIMEOUT_HOURS = float(os.environ.get("MODELMINE_BARRIER_TIMEOUT_HOURS", "24"))


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count``: owns items ``index, index + count, ...``."""

    index: int = 0
    count: int = 1

    def owns(self, i: int) -> bool:
        return i % self.count == self.index

    def items(self, n: int) -> list[int]:
        return list(range(self.index, n, self.count))


def launched() -> bool:
    """True when a launcher (accelerate, torchrun, mpirun) started more than one process."""
    keys = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    return any(int(os.environ.get(k, "1") or 1) > 1 for k in keys)


class Processes:
    """This process's place in the launch: ``index``, ``count``, ``is_main``, ``shard``."""

    def __init__(self) -> None:
        self._state = None
        if launched():
            from accelerate import PartialState  # only under `accelerate launch`; slow to import

            # without cpu=True accelerate only forms a group when CUDA (or another accelerator) is
            # present; on a CPU-only machine the processes then meet over gloo
            cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "") in ("1", "true")
            self._state = PartialState(cpu=cpu, timeout=timedelta(hours=TIMEOUT_HOURS))
        self.index = 0 if self._state is None else self._state.process_index
        self.count = 1 if self._state is None else self._state.num_processes
        self.is_main = self.index == 0
        self.shard = Shard(self.index, self.count)

    def barrier(self) -> None:
        if self.count > 1:
            self._state.wait_for_everyone()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first; the others run it after (finding its files)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def main_only(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on the main process while the others wait; ``None`` on the others."""
        out = fn() if self.is_main else None
        self.barrier()
        return out


_PROCESSES: Processes | None = None


def processes() -> Processes:
    """The process group of this launch (formed on first use; one process when not launched)."""
    global _PROCESSES
    if _PROCESSES is None:
        _PROCESSES = Processes()
    return _PROCESSES


def local_device_index() -> int | None:
    """``LOCAL_RANK`` under a launcher: which of this machine's GPUs this process uses."""
    rank = os.environ.get("LOCAL_RANK")
    return int(rank) if rank not in (None, "") and launched() else None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU. Under a multi-process launch, a bare ``cuda`` (or
    ``auto``) means this process's own GPU, ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"unknown device '{name}'") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device '{name}' is not one of cpu, cuda, mps, auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}': no CUDA GPU is available here (use device=cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{name}': MPS is not available here (use device=cpu or auto)")
    local = local_device_index()
    if device.type == "cuda" and device.index is None and local is not None:
        device = torch.device("cuda", local % max(1, torch.cuda.device_count()))
    return device
