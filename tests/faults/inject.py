"""Faults a forked ``qlam-qiskit`` process applies to itself (see zygote.py).

``install(spec)`` patches ``qlam_qiskit.io._write_all``, the one place file bytes are written:

  {"write": {"name": "checkpoint.pt", "nth": 2, "at": 100, "action": "SIGKILL"}}
      the 2nd write of a file named checkpoint.pt stops after 100 bytes (a float is a fraction
      of the file) and the process sends itself SIGKILL / SIGINT / SIGTERM, or the write fails
      with ENOSPC ("action": "ENOSPC"), as on a full disk;
  {"fill": {"name": "checkpoint.pt", "nth": 1}}
      after the 1st write of checkpoint.pt, fill the file system holding it (a real full disk
      from then on, on a small tmpfs);
  {"fill_after": {"target": "package.module:function", "nth": 1}}
      after the nth call of that function, fill the file system of the current --out;
  {"tmpfs": {"path": DIR, "size": "2m", "copy": SRC, "keep_free": BYTES, "manifest": FILE,
             "copy_back": DEST}}
      before anything else, mount a tmpfs of that size at DIR in a mount namespace of this
      process alone (needs root), copy folder SRC into it, fill it up to BYTES free, and at exit
      write FILE, a JSON manifest of DIR (name -> [size, sha256]), and copy DIR to DEST (without
      the filler), since the mount dies with the process.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CLONE_NEWNS = 0x00020000
_finish: list = []


def manifest(folder: Path) -> dict[str, list]:
    """name -> [size, sha256] of every file in ``folder`` (recursively)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = [p.stat().st_size,
                                               hashlib.sha256(p.read_bytes()).hexdigest()]
    return out


def mount_tmpfs(path: str, size: str) -> None:
    """A private tmpfs at ``path``: a mount namespace of this process alone, then mount."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)


def fill(folder: Path, keep: int = 0) -> None:
    """Take every free byte of the file system holding ``folder`` but ``keep``."""
    if keep:
        with open(folder / "filler", "wb") as f:
            f.truncate(0)
            f.write(b"\0" * max(0, shutil.disk_usage(folder).free - keep))
        return
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    for size in (4096, 512, 1):  # the last partial blocks
        try:
            with open(folder / "filler", "ab") as f:
                while True:
                    f.write(b"\0" * size)
                    f.flush()
        except OSError:
            pass


def install(spec: dict) -> None:
    if "tmpfs" in spec:
        t = spec["tmpfs"]
        mount_tmpfs(t["path"], t["size"])
        if t.get("copy"):
            shutil.copytree(t["copy"], t["path"], dirs_exist_ok=True)
        if t.get("keep_free"):
            fill(Path(t["path"]), t["keep_free"])

        def done() -> None:
            Path(t["manifest"]).write_text(json.dumps(manifest(Path(t["path"]))))
            if t.get("copy_back"):
                shutil.copytree(t["path"], t["copy_back"], ignore=shutil.ignore_patterns("filler"))

        _finish.append(done)
    if "fill_after" in spec:
        f = spec["fill_after"]
        mod_name, func = f["target"].split(":")
        mod = __import__(mod_name, fromlist=[func])
        real_f = getattr(mod, func)
        calls = {"n": 0}

        def filling(*args, **kwargs):
            out = real_f(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == f.get("nth", 1):
                fill(Path(args[1]).parent if len(args) > 1 else Path.cwd())
            return out

        setattr(mod, func, filling)
    rule = spec.get("write") or spec.get("fill")
    if not rule:
        return
    import qlam_qiskit.io as qio

    real = qio._write_all
    seen = {"n": 0}

    def write_all(fd: int, data, path) -> None:
        if Path(path).name != rule["name"]:
            return real(fd, data, path)
        seen["n"] += 1
        if seen["n"] != rule.get("nth", 1):
            return real(fd, data, path)
        if "fill" in spec:
            real(fd, data, path)
            fill(Path(path).parent)
            return None
        at = rule.get("at", 0.5)
        at = int(at * len(data)) if isinstance(at, float) else min(at, len(data))
        real(fd, memoryview(data)[:at], path)
        action = rule["action"]
        if action == "ENOSPC":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.kill(os.getpid(), getattr(signal, action))
        time.sleep(1.0)  # the signal's handler runs here (SIGKILL never returns)
        return real(fd, memoryview(data)[at:], path)

    qio._write_all = write_all


def finish() -> None:
    for f in _finish:
        f()
