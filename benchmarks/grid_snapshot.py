"""Copy what a `qlam-qiskit bench` grid needs to resume, and its results, between folders.

A grid outlives the machine it ran on only through what is committed. This copies the small
files a resumed `bench` reads (protocol.json, each study's sqlite file and best.json, each run's
result.json and metrics.jsonl, with checkpoint.pt for runs not yet finished, so they continue
from their last epoch) and the reports (table.md, results.json, plots), nothing else (no logs,
locks or tuning checkpoints). Usage, from the repository root:

    python benchmarks/grid_snapshot.py runs/bench-full benchmarks/results/bench-full  # to commit
    python benchmarks/grid_snapshot.py benchmarks/results/bench-full runs/bench-full  # to resume
"""

from __future__ import annotations

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


def snapshot(src: Path, dst: Path) -> list[Path]:
    """Copy ``files(src)`` into ``dst`` (each written to a temporary name, then renamed, so a
    cut-short copy never leaves half a file); drop checkpoints of runs finished since."""
    copied = files(src)
    for rel in copied:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        if rel.suffix == ".db":  # a study may be writing: sqlite's backup copies a consistent state
            with sqlite3.connect(src / rel) as a, sqlite3.connect(tmp) as b:
                a.backup(b)
            a.close(), b.close()
        else:
            shutil.copyfile(src / rel, tmp)
        tmp.replace(target)
    for stale in dst.glob("runs/*/checkpoint.pt"):
        if (stale.parent / "result.json").exists():
            stale.unlink()
    return copied


if __name__ == "__main__":
    if len(sys.argv) != 3 or not (Path(sys.argv[1]) / "protocol.json").is_file():
        sys.exit("usage: python benchmarks/grid_snapshot.py GRID_FOLDER DESTINATION "
                 "(GRID_FOLDER: a bench --out folder, with its protocol.json)")
    done = snapshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"copied {len(done)} files from {sys.argv[1]} to {sys.argv[2]}")
