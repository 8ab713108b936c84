"""Atomic file writes: a crash mid-write never leaves a half-written checkpoint or report."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask (the only portable way is to set and restore it)


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
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
    _atomic(Path(path), lambda p: torch.save(obj, p))


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """JSON with indent 2, atomically."""
    _atomic(Path(path), lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


def save_text(text: str, path: str | os.PathLike) -> None:
    """A text file (Markdown, logs), atomically."""
    _atomic(Path(path), lambda p: p.write_text(text))


def save_bytes(data: bytes, path: str | os.PathLike) -> None:
    """A binary file (e.g. QPY), atomically."""
    _atomic(Path(path), lambda p: p.write_bytes(data))


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """A matplotlib figure as PNG, atomically."""
    _atomic(Path(path), lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))


def save_jsonl(rows: list[dict], path: str | os.PathLike) -> None:
    """One JSON object per line, atomically (rewritten whole, so resume never duplicates rows)."""
    _atomic(Path(path), lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))
