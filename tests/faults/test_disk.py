"""A full disk, an unwritable folder, too little space: one line naming the file and the fix,
every earlier file intact, no temporary files, and a --resume that finishes the run exactly."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import qlam_qiskit.io as qio
from qlam_qiskit.cli.main import main
from faults.harness import TINY, assert_same_run, load_ckpt, one_line, snapshot

EPOCHS = 4
SEED = 3


def fresh(out: Path) -> list:
    return ["run", *TINY, "--epochs", EPOCHS, "--seed", SEED, "--out", out]


def resume(out: Path) -> list:
    return ["run", "--resume", "--quiet", "--threads", "1", "--out", out]


def content(folder: Path) -> dict:
    """name -> (size, sha256): what a copy keeps of snapshot()."""
    return {k: v[:2] for k, v in snapshot(folder).items()}


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    p = zygote.run(*fresh(out))
    assert p.rc == 0, p.stderr
    return out


@pytest.mark.parametrize("name, nth, at", [("checkpoint.pt", 2, 0), ("checkpoint.pt", 3, 4096),
                                           ("checkpoint.pt", 4, 1.0), ("metrics.jsonl", 2, 10),
                                           ("result.json", 1, 0)])
def test_disk_full_mid_run_then_resume(zygote, reference, tmp_path, name, nth, at):
    out = tmp_path / "run"
    p = zygote.start(*fresh(out), inject={"write": {"name": name, "nth": nth, "at": at,
                                                    "action": "ENOSPC"}})
    line = one_line(p, 1)
    assert "disk is full" in line and str(out / name) in line, line
    assert temps(out) == []
    epoch = load_ckpt(out)["epoch"]
    assert epoch == (nth - 1 if name == "checkpoint.pt" else EPOCHS if name == "result.json" else nth)
    assert zygote.run(*resume(out)).rc == 0
    assert_same_run(out, reference)


def can_mount_tmpfs(tmp: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount") or not shutil.which("unshare"):
        return False
    probe = tmp / "probe"
    probe.mkdir()
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs",
                        "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
    return r.returncode == 0


def test_a_real_full_disk_small_tmpfs(zygote, reference, tmp_path):
    """A 4 MB tmpfs filled after the first epoch: the next write meets a real ENOSPC."""
    if not can_mount_tmpfs(tmp_path):
        pytest.skip("no private tmpfs here (needs root and mount namespaces): the patched-writer "
                    "test above covers ENOSPC")
    disk, back, out = tmp_path / "disk", tmp_path / "back", tmp_path / "disk" / "run"
    disk.mkdir()
    p = zygote.start(*fresh(out), inject={
        "tmpfs": {"path": str(disk), "size": "4m", "manifest": str(tmp_path / "m.json"),
                  "copy_back": str(back)},
        "fill_after": {"target": "qlam_qiskit.training.loop:save_jsonl", "nth": 1}})
    line = one_line(p, 1)
    assert "disk is full" in line, line
    run = back / "run"
    assert temps(run) == [] and load_ckpt(run)["epoch"] == 1
    # too little space left for a checkpoint: refused before training, nothing touched
    p = zygote.start(*resume(disk / "run"), inject={
        "tmpfs": {"path": str(disk), "size": "4m", "copy": str(back), "keep_free": 20_000,
                  "manifest": str(tmp_path / "m2.json"), "copy_back": str(tmp_path / "back2")}})
    line = one_line(p, 1)
    assert "free" in line and str(disk / "run") in line, line
    assert content(tmp_path / "back2" / "run") == content(run)
    assert zygote.run(*resume(run)).rc == 0  # space again: resumes to the same run
    assert_same_run(run, reference)


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=30_000))
    out = tmp_path / "run"
    res = CliRunner().invoke(main, [str(a) for a in (*fresh(out), "--epochs", 1)])
    assert res.exit_code == 1 and len(res.stderr.splitlines()) == 1, res.output
    assert "free" in res.stderr and "Traceback" not in res.output
    assert not out.exists()


def unwritable() -> tuple[Path, int | None]:
    """A base folder for read-only folders (chmod 555), and the uid a child process must run as
    for permissions to bind (nobody when the tests run as root, who ignores them)."""
    base = Path(tempfile.mkdtemp(prefix="qlam-ro-"))
    base.chmod(0o755)
    return base, (65534 if os.geteuid() == 0 else None)


def test_unwritable_out_is_one_line_before_any_training(zygote, tmp_path):
    base, uid = unwritable()
    try:
        ro = base / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        p = zygote.run(*fresh(ro / "run"), uid=uid)
        line = one_line(p, 1)
        assert "permission denied" in line.lower() and str(ro) in line, line
        assert list(ro.iterdir()) == []
        run = base / "run"  # a run made by someone else: --resume cannot write there
        assert zygote.run(*fresh(run), "--epochs", 1).rc == 0
        run.chmod(0o555)
        before = snapshot(run)
        p = zygote.run(*resume(run), "--epochs", 3, uid=uid)
        line = one_line(p, 1)
        assert "permission denied" in line.lower() and str(run) in line, line
        assert "epoch" not in p.stdout  # refused before training, not after an epoch
        assert snapshot(run) == before
    finally:
        for d in base.rglob("*"):
            if d.is_dir():
                d.chmod(0o755)
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def hw_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hw") / "run"
    res = CliRunner().invoke(main, [str(a) for a in ("run", *TINY, "--epochs", 1, "--layers", 1,
                                                     "--pool", "last", "--out", out)])
    assert res.exit_code == 0, res.output
    return out


def enospc(fd, data, path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("command", [
    ["export", "--checkpoint", "{run}", "--out", "{out}"],
    ["report", "--checkpoint", "{run}", "--coupling-map", "line:2", "--steps", "1,2",
     "--transpile-max", "2", "--out", "{out}"],
    ["eval", "--checkpoint", "{run}", "--backend", "aer", "--limit", "2", "--out", "{out}"],
])
def test_export_report_eval_onto_a_full_disk(hw_run, tmp_path, monkeypatch, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.json").write_text("{}\n")
    before, run_before = snapshot(out), snapshot(hw_run)
    monkeypatch.setattr(qio, "_write_all", enospc)
    args = [a.format(run=hw_run, out=out) for a in command]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "disk is full" in errors[0], res.stderr  # report logs progress
    assert res.stderr.splitlines()[-1] == errors[0]
    assert snapshot(out) == before and snapshot(hw_run) == run_before
