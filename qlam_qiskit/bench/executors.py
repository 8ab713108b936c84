"""Where a grid's cells run: here, as subprocesses ``jobs`` at a time (``LocalExecutor``), or as
Ray tasks, each asking for its resources (``RayExecutor``: a GPU for a CUDA cell, else as many
CPUs as its torch threads). Both run ``grid.run_cell`` per cell, so run folders, logs, resume
and the table are the same whichever runs them.

On a Ray cluster every node must see the grid folder and the data at the same paths (a shared
file system) and have qlam-qiskit installed: a cell's run writes its own folder from whichever
node runs it.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from ..errors import QLAMError
from .grid import Cell, allow_runs, finished, plan, run_cell, stop_runs
from .protocol import Protocol

EXECUTORS = ("local", "ray")
"""``bench --executor`` choices."""
RAY_INSTALL = 'pip install "qlam-qiskit[ray]"'
"""How to get Ray (the optional extra)."""

OnDone = Callable[[Cell, int], None]


class Executor(ABC):
    """Runs a list of grid cells, reporting each one's exit status as it ends."""

    @abstractmethod
    def run(self, cells: list[Cell], protocol: Protocol, out: Path, *, data_dir: str | None,
            threads: int, on_done: OnDone) -> None:
        """Run ``grid.run_cell`` for every cell; call ``on_done(cell, status)`` as each ends."""


class LocalExecutor(Executor):
    """Cells as subprocesses of this machine, ``jobs`` at a time."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)

    def run(self, cells: list[Cell], protocol: Protocol, out: Path, *, data_dir: str | None,
            threads: int, on_done: OnDone) -> None:
        allow_runs()
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = {pool.submit(run_cell, c, protocol, out, data_dir, threads): c
                       for c in cells}
            for f in as_completed(futures):
                on_done(futures[f], f.result())
        except BaseException:  # Ctrl-C, SIGTERM: the pool must not go on to the queued cells
            stop_runs()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def cell_resources(protocol: Protocol, threads: int) -> dict[str, float]:
    """What a cell asks Ray for: one GPU for a CUDA cell, else its torch threads in CPUs."""
    return {"num_gpus": 1} if protocol.device.startswith("cuda") else {"num_cpus": threads}


class RayExecutor(Executor):
    """Every cell a Ray task with its resources, as many at once as the cluster holds.

    ``address`` None starts a local Ray instance on this machine's cores for the grid and stops
    it after; an address ("auto", "HOST:6379", "ray://HOST:10001") joins that cluster.
    """

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise QLAMError(f"--executor ray needs Ray: {RAY_INSTALL} (or use --executor "
                            "local)") from None
        self.ray, self.address = ray, address

    def _start(self, threads: int, device: str) -> bool:
        """Join or start Ray; True when this call started it (so ``run`` stops it after)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        if self.address is None:
            cores = os.cpu_count() or 1
            if not device.startswith("cuda") and threads > cores:
                raise QLAMError(f"--threads {threads}: this machine has {cores} cores for the "
                                f"local Ray instance; give --threads {cores} or less")
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
            return True
        try:
            _reachable(self.address)  # Ray itself retries an unreachable address for minutes
            ray.init(address=self.address, log_to_driver=False)
        except Exception as err:  # noqa: BLE001 - Ray raises several types for a bad address
            first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise QLAMError(f"--address {self.address}: cannot join that Ray cluster ({first}); "
                            "check it with `ray status` on the head node, or drop --address "
                            "for a local instance") from None
        return True

    def run(self, cells: list[Cell], protocol: Protocol, out: Path, *, data_dir: str | None,
            threads: int, on_done: OnDone) -> None:
        if not cells:
            return
        ray = self.ray
        started = self._start(threads, protocol.device)
        out = out.absolute()  # workers may start elsewhere: no relative paths
        data_dir = str(Path(data_dir).absolute()) if data_dir else None
        pending: dict[Any, Cell] = {}
        try:
            task = ray.remote(run_cell).options(**cell_resources(protocol, threads))
            pending = {task.remote(c, protocol, out, data_dir, threads): c for c in cells}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    rc = ray.get(ready[0])
                except ray.exceptions.RayError as err:  # the task or its node died
                    rc = -1
                    with open(out / "runs" / cell.name / "run.log", "a") as log:
                        log.write(f"ray: {str(err).splitlines()[0] if str(err) else err!r}\n")
                on_done(cell, rc)
        finally:
            for ref in pending:  # interrupted: each run stops and keeps its last checkpoint
                ray.cancel(ref)
            if started:
                ray.shutdown()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Raise OSError unless HOST:PORT (or ray://HOST:PORT) accepts a TCP connection; other
    forms ("auto") are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        socket.create_connection((host, int(port)), timeout=timeout).close()


def run_grid(protocol: Protocol, out: Path, *, cells: list[Cell] | None = None,
             data_dir: str | None = None, threads: int = 1, on_done: OnDone | None = None,
             executor: Executor | None = None) -> dict[str, int]:
    """Run every unfinished cell on ``executor`` (default: here, ``protocol.jobs`` at a time);
    return each cell's exit status.

    ``cells`` is ``plan(protocol)`` when already computed (planning builds models to match
    parameter counts). Output of cell c goes to ``out/runs/<c.name>/run.log``; finished cells are
    not run again.
    """
    cells = plan(protocol) if cells is None else cells
    todo = [c for c in cells if not finished(c, out)]
    status = {c.name: 0 for c in cells if c not in todo}

    def done(cell: Cell, rc: int) -> None:
        status[cell.name] = rc
        if on_done:
            on_done(cell, rc)

    (executor or LocalExecutor(protocol.jobs)).run(todo, protocol, out, data_dir=data_dir,
                                                   threads=threads, on_done=done)
    return status
