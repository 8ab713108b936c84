"""Files a run writes and reads, and what can go wrong with them.

* Atomic writes: every file goes to a temporary file beside it (``.NAME.PID.RANDOM.tmp``), is
  synced, then renamed over ``NAME``; a crash or kill mid-write never leaves a half-written
  file, and a failed write (full disk, no permission) is one ``StorageError`` line naming the
  file, with the previous version kept. Temporary files of writers that died are removed.
* Strict JSON: NaN and infinities are written as ``null``, so every JSON file parses anywhere.
* ``RunLock``: one live run per run folder (``run.lock``, an OS lock the kernel drops when the
  holder dies, so a killed run's lock is simply taken over).
* ``check_free_space``: refuse to start a run its disk cannot hold.
* ``load_checkpoint``: the one checkpoint loader; anything that is not a readable qlam-qiskit
  checkpoint is one ``CheckpointError`` line.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import CheckpointError, StorageError

CHECKPOINT = "checkpoint.pt"
"""The checkpoint's file name inside a run folder."""
LOCK = "run.lock"
"""The lock file of a live run (it holds the run's pid)."""
RUN_FILES = (CHECKPOINT, "metrics.jsonl", "result.json")
"""What a run folder holds (written atomically; ``jobs.jsonl`` is appended to)."""
TEMP_SUFFIX = ".tmp"

_REASONS = {errno.ENOSPC: ("the disk is full", "free some space"),
            errno.EDQUOT: ("the disk quota is exceeded", "free some space"),
            errno.EACCES: ("permission denied", "choose another folder or fix its permissions"),
            errno.EPERM: ("permission denied", "choose another folder or fix its permissions"),
            errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
            errno.ENOTDIR: ("a part of the path is a file", "choose another folder"),
            errno.EISDIR: ("it is a folder", "choose another file name")}


def storage_error(err: OSError, path: str | os.PathLike, what: str = "write") -> StorageError:
    """An OSError met while writing ``path`` as one line: the path, the reason, the fix."""
    reason, fix = _REASONS.get(err.errno, (err.strerror or type(err).__name__, "check the disk"))
    return StorageError(f"cannot {what} {path}: {reason}; {fix}")


def _write_all(fd: int, data: bytes | memoryview, path: Path) -> None:
    """Write every byte of ``data`` (bound for ``path``) to ``fd``: the one place file bytes
    are written, so tests can inject faults here."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:1 << 22]):]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still exists on this machine (True when unsure)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, names: tuple[str, ...] = ("*",),
                       *, any_writer: bool = False) -> list[Path]:
    """Delete the temporary files of ``names`` that interrupted writes left in ``folder``: those
    whose writer process is gone (``any_writer``: all of them, for a run folder we hold the
    lock of; also the ``.NAME.XXXXXXXX`` files of earlier versions). Returns what was removed."""
    removed = []
    for name in names:
        for p in Path(folder).glob(f".{name}.*"):
            parts = p.name.split(".")
            mine = p.name.endswith(TEMP_SUFFIX) and len(parts) >= 5 and parts[-3].isdigit()
            if not (any_writer or (mine and not _alive(int(parts[-3])))):
                continue
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def atomic_write(path: str | os.PathLike, content: bytes | Callable[[Path], None]) -> None:
    """Write ``content`` (bytes, or a function writing a given path) to ``path`` atomically:
    through a synced temporary file in the same folder, renamed over ``path``. On any failure the
    temporary file is removed and ``path`` is as it was; an OSError becomes a StorageError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_error(err, path.parent) from None
    remove_stale_temps(path.parent, (path.name,))
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    except OSError as err:
        raise storage_error(err, path) from None
    try:
        try:
            if callable(content):
                os.close(fd)
                fd = -1
                content(tmp)
            else:
                _write_all(fd, content, path)
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise storage_error(err, path) from None
        raise


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (no NaN or Infinity tokens: they become null)."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, atomically (serialised in memory first, so a full disk is an OSError)."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getbuffer())


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """Strict JSON with indent 2, atomically."""
    atomic_write(path, (json_text(obj) + "\n").encode())


def save_text(text: str, path: str | os.PathLike) -> None:
    """A text file (Markdown, logs), atomically."""
    atomic_write(path, text.encode())


def save_bytes(data: bytes, path: str | os.PathLike) -> None:
    """A binary file (e.g. QPY), atomically."""
    atomic_write(path, data)


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """A matplotlib figure as PNG, atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write(path, buf.getbuffer())


def save_jsonl(rows: list[dict], path: str | os.PathLike) -> None:
    """One strict JSON object per line, atomically (rewritten whole, so resume never duplicates
    rows)."""
    atomic_write(path, "".join(json_text(r, None) + "\n" for r in rows).encode())


# ------------------------------------------------------------------------------ run folders

try:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 1 << 20, os.SEEK_SET)  # a byte past the pid, so others can read it
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        finally:
            os.lseek(fd, 0, os.SEEK_SET)

_BUSY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLK", -1)}


class RunLock:
    """The lock of one run folder, held while a run writes there (a context manager).

    ``run.lock`` holds the owner's pid under an OS lock (``flock``) that the kernel releases
    when the owner exits however it exits, kill -9 included: a second live run is refused with
    one line naming the owner's pid, and a lock left by a dead run is taken over. Creating the
    lock file is also the check that the folder is writable. Released, the file is removed. On a
    file system without locks (some network mounts) the run goes ahead unlocked.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.created = False
        """Whether acquiring made the folder (so a run that saved nothing can remove it)."""
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise storage_error(err, self.folder) from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise storage_error(err, self.folder) from None
            try:
                _try_lock(fd)
            except OSError as err:
                holder = _holder(fd) if err.errno in _BUSY else None
                os.close(fd)
                if err.errno not in _BUSY:  # no locks on this file system
                    self._fd = None
                    return self
                raise StorageError(
                    f"{self.folder} is in use by another qlam-qiskit run (pid {holder or '?'}); "
                    "wait for it to finish or stop it, or choose another --out") from None
            try:  # a holder releasing meanwhile removes the file: lock the new one instead
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the lock holds all the same
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(fd: int) -> int | None:
    """The pid a lock file holds (its writer may still be writing it: a few tries)."""
    for _ in range(20):
        try:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        except (OSError, AttributeError):
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.005)
    return None


def check_free_space(folder: str | os.PathLike, need: int, what: str = "a checkpoint") -> None:
    """Refuse (one StorageError line) when ``folder``'s disk has less than ``need`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the writes themselves will say
    if free < need:
        raise StorageError(f"not enough free space in {folder}: {free / 1e6:.2f} MB free, "
                           f"{what} needs about {need / 1e6:.2f} MB; free some space or choose "
                           "another --out")


def check_writable(folder: str | os.PathLike, need: int = 1 << 20) -> None:
    """Refuse, before a command does its work, an output folder that cannot be made or written
    or whose disk has less than ``need`` bytes free (one StorageError line). Creates nothing."""
    target = Path(folder).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"cannot write {folder}: {existing} is a file; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        rdonly = getattr(os, "ST_RDONLY", 1) & getattr(os.statvfs(existing), "f_flag", 0) \
            if hasattr(os, "statvfs") else 0
        raise storage_error(OSError(errno.EROFS if rdonly else errno.EACCES, ""), folder)
    check_free_space(existing, need, "the output")


# ------------------------------------------------------------------------------ checkpoints

CHECKPOINT_KEYS = {"model_config": dict, "model": dict, "train_config": dict, "data": dict,
                   "epoch": int}
"""What every qlam-qiskit checkpoint holds, with its type."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file's path (which may not exist)."""
    p = Path(path)
    return p / CHECKPOINT if p.is_dir() else p


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A run's checkpoint (from a run folder or its checkpoint.pt), or a one-line CheckpointError
    saying what is wrong with it: missing, unreadable or not written by qlam-qiskit. Only
    tensors and plain data are unpickled (``weights_only``): a file never runs code on load."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} not found; pass a run folder or its {CHECKPOINT}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or foreign files all land here
        raise CheckpointError(f"{p} is not a readable checkpoint ({type(err).__name__}); it may be "
                              "truncated or corrupt: rerun without --resume into a new --out") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise CheckpointError(f"{p} is not a qlam-qiskit run checkpoint (no model_config)")
    bad = [k for k, t in CHECKPOINT_KEYS.items() if not isinstance(state.get(k), t)]
    if bad:
        raise CheckpointError(f"{p} is not a complete qlam-qiskit run checkpoint (no valid "
                              f"{', '.join(bad)}); rerun without --resume into a new --out")
    return state
