"""Files a run writes and reads: atomic writes (a crash mid-write never leaves a half-written
checkpoint or report) and the one checkpoint loader every command uses."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CheckpointError

CHECKPOINT = "checkpoint.pt"
"""The checkpoint's file name inside a run folder."""


_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask (the only portable way is to set and restore it)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, atomically."""
    atomic_write(Path(path), lambda p: torch.save(obj, p))


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """JSON with indent 2, atomically."""
    atomic_write(Path(path), lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


def save_text(text: str, path: str | os.PathLike) -> None:
    """A text file (Markdown, logs), atomically."""
    atomic_write(Path(path), lambda p: p.write_text(text))


def save_bytes(data: bytes, path: str | os.PathLike) -> None:
    """A binary file (e.g. QPY), atomically."""
    atomic_write(Path(path), lambda p: p.write_bytes(data))


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """A matplotlib figure as PNG, atomically."""
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))


def save_jsonl(rows: list[dict], path: str | os.PathLike) -> None:
    """One JSON object per line, atomically (rewritten whole, so resume never duplicates rows)."""
    atomic_write(Path(path), lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file's path (which may not exist)."""
    p = Path(path)
    return p / CHECKPOINT if p.is_dir() else p


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A run's checkpoint (from a run folder or its checkpoint.pt), or a one-line CheckpointError
    saying what is wrong with it: missing, unreadable or not written by qlam-qiskit."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} not found; pass a run folder or its {CHECKPOINT}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or foreign files all land here
        raise CheckpointError(f"{p} is not a readable checkpoint ({type(err).__name__}); it may be "
                              "truncated or corrupt: rerun without --resume into a new --out") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise CheckpointError(f"{p} is not a qlam-qiskit run checkpoint (no model_config)")
    return state
