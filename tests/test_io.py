"""Atomic writes: a failure mid-write leaves the previous file intact and no temporary files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qlam_qiskit.io import save_json, save_jsonl, save_torch


class Unpicklable:
    """Pickling this fails after torch.save has already written part of the file."""

    def __reduce__(self):
        raise RuntimeError("boom while pickling")


def test_save_torch_roundtrip_and_atomic_failure(tmp_path: Path):
    path = tmp_path / "sub" / "checkpoint.pt"
    save_torch({"w": torch.arange(5), "epoch": 1}, path)  # creates the folder too
    before = path.read_bytes()
    assert torch.load(path, weights_only=False)["epoch"] == 1
    with pytest.raises(RuntimeError, match="boom"):
        save_torch({"w": torch.zeros(100_000), "bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
    save_torch({"w": torch.ones(3), "epoch": 2}, path)
    assert torch.load(path, weights_only=False)["epoch"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def test_save_torch_interrupted_leaves_old_file(tmp_path: Path, monkeypatch):
    """Even a KeyboardInterrupt in the middle of the write keeps the old checkpoint."""
    import qlam_qiskit.io as qio

    path = tmp_path / "checkpoint.pt"
    save_torch({"epoch": 1}, path)
    before = path.read_bytes()
    real_write = qio._write_all

    def half_then_interrupt(fd, data, target):
        real_write(fd, memoryview(data)[:len(data) // 2], target)
        raise KeyboardInterrupt

    monkeypatch.setattr(qio, "_write_all", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_torch({"epoch": 2}, path)
    monkeypatch.setattr(qio, "_write_all", real_write)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_save_json_atomic_failure(tmp_path: Path, monkeypatch):
    path = tmp_path / "result.json"
    save_json({"test_accuracy": 0.5}, path)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.5}
    assert path.read_text().endswith("\n")
    before = path.read_text()

    import qlam_qiskit.io as qio
    from qlam_qiskit.errors import StorageError

    real_write = qio._write_all

    def partial_write(fd, data, target):
        real_write(fd, memoryview(data)[: len(data) // 2], target)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(qio, "_write_all", partial_write)
    with pytest.raises(StorageError, match=f"cannot write {path}: the disk is full") as err:
        save_json({"test_accuracy": 0.9, "more": list(range(50))}, path)
    assert "\n" not in str(err.value)
    with pytest.raises(StorageError):
        save_jsonl([{"epoch": 1}], tmp_path / "metrics.jsonl")
    monkeypatch.setattr(qio, "_write_all", real_write)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    # unserialisable objects fail before anything is written, too
    with pytest.raises(TypeError):
        save_json({"x": object()}, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_save_jsonl_rewrites_whole_file(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    save_jsonl([{"epoch": 1}], path)
    save_jsonl([{"epoch": 1}, {"epoch": 2}], path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"epoch": 1},
                                                                           {"epoch": 2}]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os

    from qlam_qiskit.io import save_json

    save_json({"a": 1}, tmp_path / "r.json")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("content, want", [
    (None, "not found"),
    (b"", "not a readable checkpoint"),
    (b"\x80\x02garbage", "not a readable checkpoint"),
    ("foreign", "not a qlam-qiskit run checkpoint"),
])
def test_load_checkpoint_refuses_with_one_line(tmp_path: Path, content, want):
    from qlam_qiskit.errors import CheckpointError
    from qlam_qiskit.io import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    if content == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=want) as err:
        load_checkpoint(tmp_path)  # a run folder resolves to its checkpoint.pt
    assert "\n" not in str(err.value)


def test_load_checkpoint_reads_a_folder_or_a_file(tmp_path: Path):
    from qlam_qiskit.io import load_checkpoint

    state = {"model_config": {"qubits": 3}, "model": {}, "train_config": {}, "data": {},
             "epoch": 1}
    save_torch(state, tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path)["model_config"] == {"qubits": 3}
    assert load_checkpoint(tmp_path / "checkpoint.pt")["model_config"] == {"qubits": 3}


def test_json_is_strict_nan_becomes_null(tmp_path: Path):
    """A diverged loss (NaN) or an empty split's accuracy never writes a bare NaN token."""
    save_json({"loss": float("nan"), "rows": [float("inf"), 1.5]}, tmp_path / "r.json")
    save_jsonl([{"val_loss": float("nan")}], tmp_path / "m.jsonl")
    text = (tmp_path / "r.json").read_text() + (tmp_path / "m.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads((tmp_path / "r.json").read_text()) == {"loss": None, "rows": [None, 1.5]}


def test_run_lock_refuses_a_second_holder_naming_the_first(tmp_path: Path):
    import os

    from qlam_qiskit.errors import StorageError
    from qlam_qiskit.io import LOCK, RunLock

    run = tmp_path / "run"
    with RunLock(run) as first:
        assert first.created and (run / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(StorageError, match=f"in use by another qlam-qiskit run \\(pid {os.getpid()}\\)"):
            RunLock(run).acquire()
    assert list(run.iterdir()) == []  # released: the lock file is gone
    (run / LOCK).write_text("999999999\n")  # left by a process that died
    with RunLock(run) as again:
        assert not again.created


def test_temporary_files_of_dead_writers_are_removed(tmp_path: Path):
    import os

    from qlam_qiskit.io import remove_stale_temps

    dead = tmp_path / ".checkpoint.pt.999999999.ab12cd34.tmp"  # no such pid
    live = tmp_path / f".checkpoint.pt.{os.getppid()}.ab12cd34.tmp"  # a live writer's
    old = tmp_path / ".checkpoint.pt.k2j3h4g5"  # an earlier version's mkstemp name
    for p in (dead, live, old):
        p.write_bytes(b"half")
    save_torch({"epoch": 1}, tmp_path / "checkpoint.pt")  # a write cleans its own name
    assert not dead.exists() and live.exists() and old.exists()
    remove_stale_temps(tmp_path, ("checkpoint.pt",), any_writer=True)  # under the run lock
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
