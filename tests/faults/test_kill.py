"""kill -9, Ctrl-C and SIGTERM at random moments of a tiny run (and inside its checkpoint writes),
then ``--resume``: the finished run equals an uninterrupted one tensor by tensor, and nothing
is left behind (no temporary files, no lock)."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from faults.harness import TINY, assert_same_run, load_ckpt, metrics, one_line

EPOCHS = 6
SEED = 3


def fresh(out: Path) -> list:
    return ["run", *TINY, "--epochs", EPOCHS, "--seed", SEED, "--out", out]


def resume(out: Path) -> list:
    return ["run", "--resume", "--quiet", "--threads", "1", "--out", out]


REF_SECONDS: list[float] = []
"""The uninterrupted run's wall time: random kills land within a fraction of it, so they hit a
running process however fast this machine is."""


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    t0 = time.perf_counter()
    p = zygote.run(*fresh(out))
    REF_SECONDS.append(time.perf_counter() - t0)
    assert p.rc == 0, p.stderr
    return out


def moment(rng: random.Random, lo: float, hi: float) -> float:
    """A random moment between fractions ``lo`` and ``hi`` of the uninterrupted run."""
    return rng.uniform(lo, hi) * REF_SECONDS[0]


def leftovers(out: Path) -> list[str]:
    """What an interrupted run may leave that a finished one must not: temporary files, a lock."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") or "lock" in p.name)


def check_consistent(out: Path) -> None:
    """Whatever a kill leaves: a checkpoint that loads, metrics and results that parse."""
    if (out / "checkpoint.pt").exists():
        ckpt = load_ckpt(out)
        assert 1 <= ckpt["epoch"] <= EPOCHS
        if (out / "metrics.jsonl").exists():
            assert len(metrics(out)) in (ckpt["epoch"] - 1, ckpt["epoch"])
    if (out / "result.json").exists():
        json.loads((out / "result.json").read_text())


def start(zygote, out: Path, **kw):
    """The command a user reruns: --resume when a checkpoint exists, else the original one."""
    return zygote.start(*(resume(out) if (out / "checkpoint.pt").exists() else fresh(out)), **kw)


def finish(zygote, out: Path) -> None:
    """Rerun until result.json is written (a kill after it leaves nothing to do)."""
    if not (out / "result.json").exists():
        p = start(zygote, out)
        assert p.wait() == 0, p.stderr


WRITE_KILLS = [  # (nth checkpoint write of the process, bytes written before the kill)
    (1, 0), (2, 64), (1, 0.5), (2, 1.0)]


def test_kill9_anywhere_then_resume_equals_the_uninterrupted_run(zygote, reference, tmp_path):
    rng = random.Random(20260605)
    out = tmp_path / "run"
    kills = 0
    for nth, at in WRITE_KILLS:  # inside a checkpoint write (a torn temporary file)
        p = start(zygote, out, inject={"write": {"name": "checkpoint.pt", "nth": nth, "at": at,
                                                 "action": "SIGKILL"}})
        assert p.wait() == -signal.SIGKILL, p.stderr
        kills += 1
        check_consistent(out)
    for _ in range(6):  # at random moments
        if (out / "result.json").exists():
            break
        p = start(zygote, out)
        time.sleep(moment(rng, 0.0, 0.15))  # six kills lose at most 90% of a run's progress
        p.signal(signal.SIGKILL)
        kills += p.wait() == -signal.SIGKILL
        check_consistent(out)
    assert kills >= 6
    finish(zygote, out)
    assert_same_run(out, reference)
    assert leftovers(out) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_exits_conventionally_with_the_resume_command(zygote, reference, tmp_path,
                                                                 sig, code):
    rng = random.Random(sig)
    out = tmp_path / "run"
    name = signal.Signals(sig).name
    p = start(zygote, out, inject={"write": {"name": "checkpoint.pt", "nth": 2, "at": 0.5,
                                             "action": name}})
    line = one_line(p, code)
    assert line == f"Error: interrupted; continue with: qlam-qiskit run --resume --out {out}"
    assert load_ckpt(out)["epoch"] == 1 and leftovers(out) == []
    for _ in range(3):
        if (out / "result.json").exists():
            break
        p = start(zygote, out)
        time.sleep(moment(rng, 0.05, 0.3))
        p.signal(sig)
        if p.wait() == 0:
            break
        line = one_line(p, code)
        assert line.startswith("Error: interrupted") and leftovers(out) == [], line
        check_consistent(out)
    finish(zygote, out)
    assert_same_run(out, reference)


def test_kill_between_the_last_checkpoint_and_its_metrics_then_resume(zygote, reference,
                                                                      tmp_path):
    """The last epoch's checkpoint is saved, its metrics row not yet: --resume has no epoch left
    to train, and still writes the metrics the checkpoint holds."""
    out = tmp_path / "run"
    p = start(zygote, out, inject={"write": {"name": "metrics.jsonl", "nth": EPOCHS, "at": 0,
                                             "action": "SIGKILL"}})
    assert p.wait() == -signal.SIGKILL, p.stderr
    assert load_ckpt(out)["epoch"] == EPOCHS and len(metrics(out)) == EPOCHS - 1
    finish(zygote, out)
    assert_same_run(out, reference)
    assert leftovers(out) == []


def test_interrupt_before_the_first_checkpoint_leaves_nothing(zygote, tmp_path):
    out = tmp_path / "run"
    p = zygote.start(*fresh(out), inject={"write": {"name": "checkpoint.pt", "nth": 1, "at": 10,
                                                    "action": "SIGINT"}})
    line = one_line(p, 130)
    assert "no epoch was saved: run the same command again" in line and "--resume" not in line, line
    assert not out.exists()
