"""One run per folder: a second run (or a --resume) while one is live is refused with one line
naming the holder's pid; a lock left by a killed process is taken over."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from faults.harness import TINY, assert_same_run, load_ckpt, one_line, snapshot

LONG = ["run", *TINY, "--epochs", 400, "--seed", 1]  # killed long before its end


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_two_runs_on_one_folder_one_wins_the_other_is_refused(zygote, tmp_path):
    out, ref = tmp_path / "run", tmp_path / "ref"
    args = ["run", *TINY, "--epochs", 4, "--seed", 2]
    a, b = zygote.start(*args, "--out", out), zygote.start(*args, "--out", out)
    rcs = sorted([a.wait(), b.wait()])
    assert rcs[0] == 0 and rcs[1] != 0, (a.stderr, b.stderr)
    loser = a if a.rc else b
    line = one_line(loser)
    assert ("in use by another qlam-qiskit run (pid " in line or "already holds a run" in line), line
    assert zygote.run(*args, "--out", ref).rc == 0
    assert_same_run(out, ref)  # result.json, checkpoint and metrics all from the one winner


def test_a_resume_or_new_run_while_a_run_is_live_is_refused(zygote, tmp_path):
    out = tmp_path / "run"
    live = zygote.start(*LONG, "--out", out)
    wait_for(out / "checkpoint.pt")
    p = zygote.run("run", "--resume", "--quiet", "--threads", "1", "--out", out)
    line = one_line(p, 1)
    assert f"{out} is in use by another qlam-qiskit run (pid {live.pid})" in line, line
    p = zygote.run("run", *TINY, "--epochs", 2, "--out", out)
    assert "already holds a run; pass --resume" in one_line(p, 1)
    assert live.poll() is None  # neither disturbed the live run
    live.signal(signal.SIGKILL)
    live.wait()
    before = snapshot(out)
    assert any("lock" in name for name in before)  # left by the killed holder
    done = load_ckpt(out)["epoch"]
    p = zygote.run("run", "--resume", "--quiet", "--threads", "1", "--epochs", done + 1,
                   "--out", out)
    assert p.rc == 0, p.stderr  # a dead holder's lock is taken over
    assert json.loads((out / "result.json").read_text())["epochs"] == done + 1
    assert not any("lock" in p.name for p in out.iterdir())


def test_stale_lock_from_a_dead_pid_is_taken_over(zygote, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = zygote.run("run", "--help").pid  # a pid that has exited
    (out / "run.lock").write_text(f"{dead}\n")
    p = zygote.run("run", *TINY, "--epochs", 1, "--out", out)
    assert p.rc == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "result.json"]
    assert not os.path.exists(out / "run.lock")
