"""Ctrl-C or SIGTERM on `bench` stops the grid: no queued cell or trial starts after it, and the
running ones are stopped at once (each keeps its checkpoint, so a rerun resumes)."""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qlam_qiskit.bench import grid
from qlam_qiskit.bench.executors import LocalExecutor
from qlam_qiskit.bench.grid import Cell
from qlam_qiskit.bench.protocol import PROTOCOLS

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"


@pytest.fixture
def sleeping_cells(monkeypatch, tmp_path: Path):
    """Every cell's command: write a marker with the pid, then sleep a minute."""
    def command(cell, protocol, run_dir, *, data_dir, threads):
        return [sys.executable, "-c", SLEEPER, str(tmp_path / f"started-{cell.name}")]
    monkeypatch.setattr(grid, "command", command)
    yield tmp_path
    grid.allow_runs()


def interrupt_after(seconds: float) -> None:
    """Ctrl-C in the main thread after ``seconds`` (SIGALRM raising KeyboardInterrupt)."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def started(folder: Path) -> list[int]:
    return [int(p.read_text() or 0) for p in folder.glob("started-*")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as stopped
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX timers")
def test_an_interrupted_grid_starts_no_queued_cell_and_stops_running_ones(sleeping_cells):
    cells = [Cell("smnist", 1, "lstm", s, 8) for s in range(5)]
    t0 = time.monotonic()
    interrupt_after(2.0)
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(jobs=2).run(cells, PROTOCOLS["full"], sleeping_cells, data_dir=None,
                                  threads=1, on_done=lambda c, rc: None)
    assert time.monotonic() - t0 < 20  # not 60 s per cell
    time.sleep(0.5)
    pids = started(sleeping_cells)
    assert len(pids) == 2  # the two running cells, none of the three queued
    assert not any(alive(p) for p in pids)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX timers")
def test_interruptible_stops_runs_a_pool_of_its_own_waits_on(sleeping_cells):
    """As Optuna's n_jobs pool does in tuning: the main thread would otherwise wait it out."""
    protocol, late = PROTOCOLS["full"], []

    def trials() -> None:
        with ThreadPoolExecutor(2) as pool:
            for s in range(2):
                pool.submit(grid.run_in, Cell("smnist", 1, "gru", s, 8), protocol,
                            sleeping_cells / f"trial-{s}", None, 1)
        late.append(grid.run_in(Cell("smnist", 1, "gru", 9, 8), protocol,
                                sleeping_cells / "late", None, 1))

    grid.allow_runs()
    t0 = time.monotonic()
    interrupt_after(2.0)
    with pytest.raises(KeyboardInterrupt):
        grid.interruptible(trials)
    assert time.monotonic() - t0 < 20
    time.sleep(0.5)
    pids = started(sleeping_cells)
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    assert late == [grid.STOPPED]  # asked for after the stop: not started


def test_a_cell_finished_meanwhile_is_not_run(sleeping_cells):
    """A result copied in (from another grid with the same cell) after the grid planned it."""
    cell = Cell("smnist", 1, "lstm", 0, 8)
    (sleeping_cells / "runs" / cell.name).mkdir(parents=True)
    (sleeping_cells / "runs" / cell.name / "result.json").write_text("{}")
    assert grid.run_cell(cell, PROTOCOLS["full"], sleeping_cells, None, 1) == 0
    assert started(sleeping_cells) == []
