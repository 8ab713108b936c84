"""Copy what a `qlam-qiskit bench` grid needs to resume, and its results, between folders.

A grid outlives the machine it ran on only through what is committed. This copies the small
files a resumed `bench` reads (protocol.json, each study's sqlite file and best.json, each run's
result.json and metrics.jsonl, with checkpoint.pt for runs not yet finished, so they continue
from their last epoch) and the reports (table.md, results.json, plots), nothing else (no logs,
locks or tuning checkpoints). Usage, from the repository root:

    python benchmarks/grid_snapshot.py runs/bench-full benchmarks/results/bench-full  # to commit
    python benchmarks/grid_snapshot.py benchmarks/results/bench-full runs/bench-full  # to resume

``--merge`` folds a subset grid (``bench --models/--tasks/--seeds/--downsample`` in its own
folder, the same settings otherwise) into the full grid's folder: the runs and studies of the
subset's own cells (best.json entries merged; runs of other cells its folder may hold, say an
earlier grid's, are left out, so they never overwrite newer ones), not its protocol or reports.
Every run of the full folder whose parameter count is not its cell's as planned now moves to
``stale/`` (``bench.grid.retire_stale``), before the copy (so a rerun cell's old run is kept)
and after it; then the full folder's table, results.json and plots are written again:

    python benchmarks/grid_snapshot.py --merge runs/bench-qlam benchmarks/results/bench-full
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

PATTERNS = ("protocol.json", "table.md", "results.json", "*.png", "tune/*.db", "tune/best.json",
            "runs/*/result.json", "runs/*/metrics.jsonl")


def files(src: Path) -> list[Path]:
    """The files of grid folder ``src`` to copy, relative to it."""
    found = {p for pattern in PATTERNS for p in src.glob(pattern)}
    found |= {p for p in src.glob("runs/*/checkpoint.pt") if not (p.parent / "result.json").exists()}
    return sorted(p.relative_to(src) for p in found if p.is_file())


def copy(src: Path, dst: Path, rel: Path) -> None:
    """src/rel to dst/rel through a temporary name, so a cut-short copy never leaves half a
    file; a study's sqlite file through sqlite's backup (a study may be writing it)."""
    target = dst / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if rel.suffix == ".db":
        with sqlite3.connect(src / rel) as a, sqlite3.connect(tmp) as b:
            a.backup(b)
        a.close(), b.close()
    else:
        shutil.copyfile(src / rel, tmp)
    tmp.replace(target)


def drop_finished_checkpoints(dst: Path) -> None:
    """Remove the checkpoints in ``dst`` of runs finished since they were copied."""
    for stale in dst.glob("runs/*/checkpoint.pt"):
        if (stale.parent / "result.json").exists():
            stale.unlink()


def snapshot(src: Path, dst: Path) -> list[Path]:
    """Copy ``files(src)`` into ``dst`` (each written to a temporary name, then renamed, so a
    cut-short copy never leaves half a file); drop checkpoints of runs finished since."""
    copied = files(src)
    for rel in copied:
        copy(src, dst, rel)
    drop_finished_checkpoints(dst)
    return copied


SUBSET = ("models", "tasks", "seeds", "downsample")
"""Protocol fields a subset grid may narrow; every other result setting must match to merge."""


def merge(src: Path, dst: Path) -> list[str]:
    """Fold subset grid ``src`` into full grid ``dst`` (see the module docstring); returns what
    it did, a line each. Refuses (SystemExit, one line) grids of other settings."""
    from dataclasses import fields

    from qlam_qiskit.bench.grid import plan, retire_stale
    from qlam_qiskit.bench.protocol import Protocol, results_settings
    from qlam_qiskit.bench.report import summarise
    from qlam_qiskit.bench.tune import study_name

    known = {f.name for f in fields(Protocol)}
    to_protocol = lambda d: Protocol(**{k: tuple(v) if isinstance(v, list) else v  # noqa: E731
                                        for k, v in d.items() if k in known})

    load = lambda d: json.loads((d / "protocol.json").read_text())  # noqa: E731
    a, b = load(src), load(dst)
    same = lambda p: {k: v for k, v in results_settings(p).items()  # noqa: E731
                      if k not in SUBSET + ("name", "about")}
    if same(a) != same(b):
        sys.exit(f"{src} and {dst} hold grids of other settings: only {', '.join(SUBSET)} may "
                 "differ to merge")
    protocol, sub = to_protocol(b), to_protocol(a)
    # Only the subset's own cells and studies are copied (other runs its folder holds, an
    # earlier grid's, stay out); a full-folder run that one replaces moves to stale/ first.
    cells = plan(sub)
    ours = {c.name for c in cells} | {study_name(c, sub) for c in cells}
    moved = retire_stale(plan(protocol) + cells, protocol, dst)
    copied = [p for p in files(src) if p.parts[0] in ("runs", "tune") and p.name != "best.json"
              and p.parts[1].removesuffix(".db") in ours]
    for rel in copied:
        copy(src, dst, rel)
    best_src, best_dst = src / "tune" / "best.json", dst / "tune" / "best.json"
    if best_src.is_file():
        best = {**(json.loads(best_dst.read_text()) if best_dst.is_file() else {}),
                **{k: v for k, v in json.loads(best_src.read_text()).items() if k in ours}}
        tmp = best_dst.with_name("best.json.tmp")
        tmp.write_text(json.dumps(best, indent=2) + "\n")
        tmp.replace(best_dst)
    drop_finished_checkpoints(dst)
    moved += retire_stale(plan(protocol), protocol, dst)
    summarise(dst, protocol)
    return [f"merged {len(copied)} files from {src} into {dst}", *moved,
            f"wrote {dst / 'table.md'}"]


if __name__ == "__main__":
    args = sys.argv[1:]
    merging = args[:1] == ["--merge"]
    args = args[1:] if merging else args
    if len(args) != 2 or not (Path(args[0]) / "protocol.json").is_file() or \
            (merging and not (Path(args[1]) / "protocol.json").is_file()):
        sys.exit("usage: python benchmarks/grid_snapshot.py [--merge] GRID_FOLDER DESTINATION "
                 "(GRID_FOLDER: a bench --out folder, with its protocol.json; with --merge, "
                 "DESTINATION is the full grid's folder, with its own)")
    if merging:
        print("\n".join(merge(Path(args[0]), Path(args[1]))))
    else:
        done = snapshot(Path(args[0]), Path(args[1]))
        print(f"copied {len(done)} files from {args[0]} to {args[1]}")
