"""Run a protocol's grid, one ``qlam-qiskit run`` per cell, resuming whatever was cut short.

Each cell is its own process (``python -m qlam_qiskit run``) writing its own run folder, so cells
can run side by side, a crash stays in its cell's log, and an interrupted grid resumes per cell:
finished cells (result.json) are skipped, cut-short ones continue from their checkpoint. Where
the cells run is the executor's business (``executors.run_grid``: here, or as Ray tasks).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..models import ModelConfig, QLAMClassifier
from ..models.baselines import BaselineClassifier
from ..data import TASK_INFO
from ..training.presets import preset
from .protocol import Protocol


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a model on a task (at a pixel downsampling factor) with a seed."""

    task: str
    downsample: int
    model: str
    seed: int
    d_model: int
    """Residual width: the preset's for qlam, the parameter-matched one for a baseline."""
    lr: float | None = None
    """Learning rate (tuned); None: the protocol's ``lr``."""
    circuit_lr: float | None = None
    """Circuit-angle learning rate (tuned, qlam); None: the protocol's ``circuit_lr``."""

    @property
    def name(self) -> str:
        return f"{self.task}-d{self.downsample}-{self.model}-s{self.seed}"


@functools.lru_cache(maxsize=None)
def _num_params(kind: str, task: str, downsample: int, d_model: int, gray: bool) -> int:
    """Parameters of ``kind`` with residual width ``d_model`` on ``task`` (built, then counted;
    cached: planning, width matching and ``retire_stale`` ask for the same models again)."""
    p = preset(task, downsample, kind)
    t, channels = TASK_INFO[task].shape(downsample, gray)
    cfg = ModelConfig(**{**p["model"], "d_model": d_model}, d_input=channels, num_classes=10,
                      max_len=t if p["position"] else 0)
    model = QLAMClassifier(cfg) if kind == "qlam" else BaselineClassifier(kind, cfg)
    return sum(q.numel() for q in model.parameters())


def matched_width(kind: str, task: str, downsample: int, gray: bool, target: int) -> int:
    """Even residual width whose parameter count is nearest ``target`` (counts grow with width)."""
    best, best_gap = 8, None
    for d in range(8, 513, 2):
        gap = _num_params(kind, task, downsample, d, gray) - target
        if best_gap is None or abs(gap) < abs(best_gap):
            best, best_gap = d, gap
        if gap > 0:
            break
    return best


def plan(protocol: Protocol) -> list[Cell]:
    """The protocol's cells in run order: task by task, seeds outermost so early results span models."""
    cells = []
    for task in protocol.tasks:
        for ds in protocol.downsample:
            d_qlam = ModelConfig.d_model
            target = _num_params("qlam", task, ds, d_qlam, protocol.gray)
            width = {m: d_qlam if m == "qlam" or not protocol.match_params
                     else matched_width(m, task, ds, protocol.gray, target)
                     for m in protocol.models}
            cells += [Cell(task, ds, m, s, width[m]) for s in protocol.seeds
                      for m in protocol.models]
    return cells


def command(cell: Cell, protocol: Protocol, run_dir: Path, *, data_dir: str | None,
            threads: int) -> list[str]:
    """The ``qlam-qiskit run`` argument list for ``cell``, resuming if its checkpoint exists."""
    p = protocol
    args = [sys.executable, "-m", "qlam_qiskit", "run", "--device", p.device, "--threads",
            str(threads), "--quiet", "--out", str(run_dir)]
    if data_dir:
        args += ["--data-dir", str(data_dir)]
    if (run_dir / "checkpoint.pt").exists():
        return args + ["--resume"]  # everything else comes from the checkpoint
    args += ["--task", cell.task, "--downsample", str(cell.downsample), "--model", cell.model, "--seed",
             str(cell.seed), "--d-model", str(cell.d_model), "--epochs", str(p.epochs),
             "--batch-size", str(p.batch_size),
             "--lr", str(p.lr if cell.lr is None else cell.lr),
             "--circuit-lr", str(p.circuit_lr if cell.circuit_lr is None else cell.circuit_lr)]
    if p.gray and cell.task == "scifar10":
        args.append("--gray")
    if p.limit_train:
        args += ["--limit-train", str(p.limit_train)]
    if p.limit_test:
        args += ["--limit-test", str(p.limit_test)]
    return args


def finished(cell: Cell, out: Path) -> bool:
    """Whether ``cell`` has run to completion under grid folder ``out``."""
    return (out / "runs" / cell.name / "result.json").is_file()


def retire_stale(cells: list[Cell], protocol: Protocol, out: Path) -> list[str]:
    """Move every finished run whose parameter count is not its cell's as planned now (a run of
    an earlier preset or width: the model changed since) from ``out/runs`` to ``out/stale``
    (``<name>-<params>p``), so the grid runs it again and the table leaves the old one out.
    Returns one line per run moved."""
    moved = []
    for c in cells:
        res = out / "runs" / c.name / "result.json"
        if not res.is_file():
            continue
        have = json.loads(res.read_text()).get("num_params")
        want = _num_params(c.model, c.task, c.downsample, c.d_model, protocol.gray)
        if have is not None and have != want:
            dest = out / "stale" / f"{c.name}-{have}p"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.move(str(res.parent), str(dest))
            moved.append(f"{c.name}: its run has {have:,} parameters, the plan {want:,} "
                         f"(the model changed since); moved to {dest}, it runs again")
    return moved


def run_cell(cell: Cell, protocol: Protocol, out: Path, data_dir: str | None,
             threads: int) -> int:
    """Run one cell as its own process, resuming its checkpoint if it has one; output appended
    to ``out/runs/<cell.name>/run.log``. Returns the exit status. The command is built where the
    cell runs (a Ray worker too), so a retried cell resumes rather than starts over. A cell that
    finished meanwhile (copied in from another grid with the same cell) is not run again."""
    if finished(cell, out):
        return 0
    return run_in(cell, protocol, out / "runs" / cell.name, data_dir, threads)


STOPPED = 143
"""What ``run_in`` returns for a run it did not start because the grid is stopping (SIGTERM's code)."""
_live: set[subprocess.Popen] = set()  # the cell processes this process has running
_live_lock = threading.Lock()
_stopping = threading.Event()


def run_in(cell: Cell, protocol: Protocol, run_dir: Path, data_dir: str | None,
           threads: int) -> int:
    """``run_cell`` in a given run folder (tuning runs have their own); returns the exit status."""
    run_dir.mkdir(parents=True, exist_ok=True)
    args = command(cell, protocol, run_dir, data_dir=data_dir, threads=threads)
    with open(run_dir / "run.log", "a") as log, _live_lock:
        if _stopping.is_set():
            return STOPPED
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _live.add(proc)
    try:
        return proc.wait()
    finally:
        with _live_lock:
            _live.discard(proc)
        if proc.poll() is None:  # this thread was interrupted (Ctrl-C, SIGTERM): stop the run too
            proc.terminate()


def stop_runs(timeout: float = 120.0) -> None:
    """Stop the grid (Ctrl-C, SIGTERM): start no more runs, SIGTERM the running ones (each
    releases its lock and keeps its last epoch's checkpoint, so a rerun resumes it) and wait."""
    with _live_lock:
        _stopping.set()
        procs = list(_live)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def interruptible(fn: Callable[[], Any]) -> Any:
    """``fn()`` run in a helper thread, so that Ctrl-C or SIGTERM here (the main thread) stops the
    runs it waits on (``stop_runs``) and returns at once, even when ``fn`` waits on a pool of its
    own (Optuna's ``n_jobs``); then the interrupt goes on up."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            box["error"] = err

    worker = threading.Thread(target=target, name="grid-runs", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.25)
    except BaseException:
        stop_runs()
        worker.join()
        raise
    if "error" in box:
        raise box["error"]
    return box.get("value")


def allow_runs() -> None:
    """Undo ``stop_runs`` (a later grid in the same process, as in tests)."""
    _stopping.clear()
