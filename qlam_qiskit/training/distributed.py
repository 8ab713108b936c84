"""One run across several processes (torchrun): the process group, which rank this is, and the
few collectives the training loop needs.

``torchrun --nproc-per-node N ... qlam-qiskit run`` sets WORLD_SIZE, RANK and LOCAL_RANK; with
WORLD_SIZE above 1 ``process_group`` joins the group (gloo on CPU, NCCL on CUDA, each rank on
cuda:LOCAL_RANK). Without them (or WORLD_SIZE 1) it yields ``SINGLE`` and starts nothing: a
one-process run takes the same code path as before, with no collective anywhere.

A failure on one rank must not leave the others waiting: work done on rank 0 only (the run
folder, the files) goes through ``Group.on_main``, work every rank does alone (loading data)
through ``Group.each``; either ends with a vote, so when one rank fails every rank raises. Every
collective also times out after ``TIMEOUT``, and torchrun stops the other ranks when one exits.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from ..errors import QLAMError

T = TypeVar("T")

TIMEOUT = timedelta(minutes=30)
"""How long a collective waits for the slowest rank before it fails (a rank that hangs or died
without torchrun noticing): longer than any one rank's checkpoint write or evaluation."""


def world_size() -> int:
    """Processes in this run as torchrun announces them (WORLD_SIZE); 1 outside torchrun."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise QLAMError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start the run "
                        "with torchrun, or unset WORLD_SIZE") from None


def is_main_process() -> bool:
    """Whether this process is rank 0 (or alone): the one that prints and writes files."""
    return world_size() == 1 or os.environ.get("RANK", "0") == "0"


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank of world (0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    """Rank on this machine: the CUDA device a rank trains on."""
    device: str = "cpu"
    """Where collectives' tensors live (NCCL needs CUDA tensors)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over ranks (float64); as given when alone."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def all_ok(self, ok: bool) -> bool:
        """Whether every rank says ok (a vote every rank must join)."""
        if self.world == 1:
            return ok
        t = torch.tensor([1 if ok else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only, then wait for it; if it raised, every rank raises (rank 0
        its own error, the others one line). Returns fn's value on rank 0, None elsewhere."""
        if self.world == 1:
            return fn()
        return self._settle(fn if self.is_main else lambda: None, "rank 0")

    def each(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it raised on any, every rank raises."""
        if self.world == 1:
            return fn()
        return self._settle(fn, "another rank")

    def _settle(self, fn: Callable[[], T], who: str) -> T:
        err: BaseException | None = None
        value = None
        try:
            value = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below, after the vote
            err = e
        if not self.all_ok(err is None):
            if err is not None:
                raise err
            raise QLAMError(f"{who} of the {self.world} processes failed (its error is printed "
                            f"above); process {self.rank} stops too")
        return value


SINGLE = Group()
"""A process alone: no process group, no collective."""


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        raise QLAMError(f"WORLD_SIZE is set but {name} is not: start multi-process runs with "
                        "torchrun (it sets RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)") from None


def _rank_device(device: str, local_rank: int) -> str:
    """The device this rank trains on: cpu, or cuda:LOCAL_RANK for --device cuda."""
    if device == "cpu":
        return device
    if device != "cuda":
        raise QLAMError(f"--device {device} under torchrun: pass --device cuda; each process "
                        "takes cuda:LOCAL_RANK")
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise QLAMError(f"process with LOCAL_RANK {local_rank} has no GPU of its own (this "
                        f"machine has {n}); start at most {n} processes per node "
                        "(torchrun --nproc-per-node)")
    return f"cuda:{local_rank}"


@contextmanager
def process_group(device: str = "cpu") -> Iterator[Group]:
    """Join torchrun's process group for the length of a run (gloo on CPU, NCCL on CUDA) and
    leave it after; alone (no torchrun, or WORLD_SIZE 1): ``SINGLE``, and nothing is started.
    A group someone else already started (your own launcher) is used as is and left running."""
    world = world_size()
    if world == 1:
        yield SINGLE
        return
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    rank_device = _rank_device(device, local_rank)
    own = not dist.is_initialized()
    if not own:
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        if rank_device != "cpu":
            torch.cuda.set_device(torch.device(rank_device))
        dist.init_process_group("nccl" if rank_device != "cpu" else "gloo", timeout=TIMEOUT)
    try:
        yield Group(rank, world, local_rank, rank_device)
    finally:
        if own:
            dist.destroy_process_group()
