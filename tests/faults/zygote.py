"""A warm process that forks fresh ``qlam-qiskit`` processes on request, for the fault suite.

Importing torch, Qiskit and the CLI takes seconds; a fork of a process that has already done so
takes milliseconds, so the suite can kill, interrupt and restart real processes many times. The
zygote runs no parallel torch or numba code itself (one thread, the dense kernel in its warm-up),
so its children start with clean thread pools.

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
  {"op": "start", "args": [...], "cwd": DIR, "stdout": FILE, "stderr": FILE, "env": {...},
   "unset": [...], "inject": {...}, "uid": N}                -> {"pid": PID}
  {"op": "wait", "pid": PID, "timeout": SECONDS}             -> {"pid": PID, "rc": RC or null}
RC is the exit status, or minus the signal number for a process killed by a signal (as
``subprocess`` reports it); null when the process is still running after ``timeout``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback

import torch

torch.set_num_threads(1)  # no OpenMP pool in the zygote: forked children start clean

from qlam_qiskit.cli.main import main  # noqa: E402

import inject  # noqa: E402  (tests/faults/inject.py, beside this file)

WARM_UP = ["run", "--limit-train", "16", "--limit-test", "8", "--patch", "49", "--qubits", "2",
           "--d-model", "4", "--heads", "1", "--epochs", "1", "--batch-size", "8", "--quiet",
           "--threads", "1", "--kernel", "dense", "--out"]


def warm_up() -> None:
    """One tiny run in-process, output discarded: lazy imports and data caches are loaded once."""
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.dup(1), os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            main(WARM_UP + [os.path.join(tmp, "warm")], standalone_mode=False)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, null):
                os.close(fd)


def child(req: dict) -> None:
    """In the forked process: set up files, environment and faults, run the CLI, exit."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(req["cwd"])
        os.environ.update(req.get("env") or {})
        for k in req.get("unset") or []:
            os.environ.pop(k, None)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.dup2(f, fd)
            os.close(f)
        inject.install(req.get("inject") or {})
        if req.get("uid") is not None:  # drop root, so file permissions apply
            os.setgroups([])
            os.setresgid(req["uid"], req["uid"], req["uid"])
            os.setresuid(req["uid"], req["uid"], req["uid"])
        try:
            main(args=req["args"], prog_name="qlam-qiskit")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:  # uncaught: Python prints a traceback and dies by SIGINT
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:  # noqa: BLE001 - uncaught: Python prints a traceback, exit 1
            traceback.print_exc()
            code = 1
        inject.finish()
    except BaseException:  # noqa: BLE001 - a broken harness: say why
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def serve() -> None:
    warm_up()
    reply = sys.stdout
    print(json.dumps({"ready": True}), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "start":
            pid = os.fork()
            if pid == 0:
                child(req)
            print(json.dumps({"pid": pid}), file=reply, flush=True)
        elif req["op"] == "wait":
            print(json.dumps({"pid": req["pid"], "rc": wait(req["pid"], req["timeout"])}),
                  file=reply, flush=True)


if __name__ == "__main__":
    serve()
