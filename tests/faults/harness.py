"""The fault suite's harness: real ``qlam-qiskit`` processes forked from a warm zygote, killed and
interrupted at chosen points, and what they leave on disk.

The fixtures are in conftest.py beside this file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

TINY = ["--limit-train", "16", "--limit-test", "8", "--patch", "49", "--qubits", "2",
        "--d-model", "4", "--heads", "1", "--batch-size", "8", "--quiet", "--threads", "1",
        "--kernel", "dense"]
"""A run of a fraction of a second: 16 images of 4 tokens, 2 steps per epoch."""
TIMING = {"seconds", "sample_steps_per_s", "train_seconds", "probe_seconds_per_sample",
          "estimated_seconds"}
"""Wall-clock fields: the only ones allowed to differ between an interrupted and a whole run."""


@dataclass
class Proc:
    """A forked qlam-qiskit process: its pid, exit status and output files."""

    zygote: "Zygote"
    pid: int
    stdout_path: Path
    stderr_path: Path
    rc: int | None = field(default=None)

    def wait(self, timeout: float = 60.0) -> int:
        if self.rc is None:
            self.rc = self.zygote.wait(self.pid, timeout)
            assert self.rc is not None, f"pid {self.pid} still running after {timeout}s"
        return self.rc

    def poll(self) -> int | None:
        if self.rc is None:
            self.rc = self.zygote.wait(self.pid, 0.0)
        return self.rc

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


class Zygote:
    """The warm parent process (zygote.py) and the requests it serves."""

    def __init__(self) -> None:
        """Start the zygote; it imports and warms up in the background until ``ready()``."""
        self.logs = Path(tempfile.mkdtemp(prefix="qlam-faults-"))  # children's stdout/stderr
        self.n, self._ready = 0, False
        self.proc = subprocess.Popen([sys.executable, "-u", str(HERE / "zygote.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=HERE)

    def ready(self) -> None:
        if not self._ready:
            line = self.proc.stdout.readline()
            assert line and json.loads(line) == {"ready": True}, "the zygote did not start"
            self._ready = True

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, *args, cwd: Path | None = None, env: dict | None = None,
              unset: tuple[str, ...] = ("QLAM_DATA_DIR",), inject: dict | None = None,
              uid: int | None = None) -> Proc:
        self.n += 1
        out, err = self.logs / f"{self.n}.out", self.logs / f"{self.n}.err"
        pid = self._ask({"op": "start", "args": [str(a) for a in args],
                         "cwd": str(cwd or self.logs), "stdout": str(out), "stderr": str(err),
                         "env": env or {}, "unset": list(unset), "inject": inject or {},
                         "uid": uid})["pid"]
        return Proc(self, pid, out, err)

    def run(self, *args, timeout: float = 60.0, **kw) -> Proc:
        p = self.start(*args, **kw)
        p.wait(timeout)
        return p

    def wait(self, pid: int, timeout: float) -> int | None:
        return self._ask({"op": "wait", "pid": pid, "timeout": timeout})["rc"]

    def close(self) -> None:
        self.proc.kill()  # nothing to flush: its children have all been waited for
        self.proc.wait(10)
        shutil.rmtree(self.logs, ignore_errors=True)


# ------------------------------------------------------------------ what a run leaves on disk

def snapshot(folder: Path) -> dict[str, tuple[int, str, int]]:
    """Every file under ``folder``: (size, sha256, mtime_ns), to prove nothing was touched."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, hashlib.sha256(p.read_bytes()).hexdigest(),
                                               st.st_mtime_ns)
    return out


def load_ckpt(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def assert_same_tensors(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers equal exactly, tensor by tensor."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"tensor {where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (where, a.keys(), b.keys())
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def assert_same_run(out: Path, ref: Path) -> None:
    """A resumed run equals the uninterrupted one: every tensor of the checkpoint (weights,
    optimiser moments, schedule, RNG), the metrics and result.json, all but wall-clock times."""
    a, b = load_ckpt(out), load_ckpt(ref)
    assert_same_tensors(strip_timing(a), strip_timing(b), "checkpoint")
    assert strip_timing(metrics(out)) == strip_timing(metrics(ref))
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (out, ref))
    assert strip_timing(ra) == strip_timing(rb)


def one_line(proc: Proc, code: int | None = None) -> str:
    """The process failed with exactly one line on stderr (no traceback); returns it."""
    rc = proc.wait()
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert rc != 0 and len(lines) == 1, (rc, proc.stderr)
    if code is not None:
        assert rc == code, (rc, proc.stderr)
    return lines[0]
