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
    path = tmp_path / "checkpoint.pt"
    save_torch({"epoch": 1}, path)
    before = path.read_bytes()
    real_save = torch.save

    def half_then_interrupt(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_torch({"epoch": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_save_json_atomic_failure(tmp_path: Path, monkeypatch):
    path = tmp_path / "result.json"
    save_json({"test_accuracy": 0.5}, path)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.5}
    assert path.read_text().endswith("\n")
    before = path.read_text()

    real_write = Path.write_text

    def partial_write(self, data, *args, **kwargs):
        real_write(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", partial_write)
    with pytest.raises(OSError, match="No space left"):
        save_json({"test_accuracy": 0.9, "more": list(range(50))}, path)
    with pytest.raises(OSError):
        save_jsonl([{"epoch": 1}], tmp_path / "metrics.jsonl")
    monkeypatch.setattr(Path, "write_text", real_write)
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

    save_torch({"model_config": {"qubits": 3}, "model": {}}, tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path)["model_config"] == {"qubits": 3}
    assert load_checkpoint(tmp_path / "checkpoint.pt")["model_config"] == {"qubits": 3}
