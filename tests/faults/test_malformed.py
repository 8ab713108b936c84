"""A table of malformed inputs and options: each one exits non-zero with exactly one line on
stderr, no traceback, and leaves every existing file (and folder) as it was."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qlam_qiskit.cli.main import main
from qlam_qiskit.data import DATA_ENV
from datafiles import make_cifar_batches, make_cifar_npz, make_images, write_idx
from faults.harness import TINY

RUN = ["run", *TINY, "--epochs", 1]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """A finished two-epoch run to resume, evaluate and damage (copied per case)."""
    out = tmp_path_factory.mktemp("done") / "run"
    res = CliRunner().invoke(main, [str(a) for a in ("run", *TINY, "--epochs", 2, "--layers", 1,
                                                     "--pool", "last", "--out", out)])
    assert res.exit_code == 0, res.output
    return out


def tree(folder: Path) -> dict:
    """Every file and folder under ``folder``: files by size, content and mtime."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(folder))] = ("dir",) if p.is_dir() else \
            (st.st_size, p.read_bytes(), st.st_mtime_ns)
    return out


# ------------------------------------------------------------------ makers: (tmp) -> data dir

def mnist(tmp: Path, n_train: int = 12, n_test: int = 6, shape=(28, 28)) -> Path:
    d = tmp / "data"
    x, y = make_images(n_train, 1, shape)
    write_idx(d, "train", x, y)
    x, y = make_images(n_test, 2, shape)
    write_idx(d, "t10k", x, y)
    return d


def damaged(tmp: Path, name: str, how) -> Path:
    d = mnist(tmp)
    p = d / name
    p.write_bytes(how(p.read_bytes()))
    return d


def regz(fn):
    """Apply ``fn`` to the un-gzipped bytes of a .gz file."""
    return lambda raw: gzip.compress(fn(gzip.decompress(raw)))


def cifar_npz(tmp: Path, **test) -> Path:
    d = tmp / "data"
    make_cifar_npz(d)
    if test:
        np.savez(d / "test.npz", **test)
    return d


def cifar_batches(tmp: Path, damage=None) -> Path:
    d = tmp / "data" / "cifar-10-batches-py"
    make_cifar_batches(d, make_cifar_npz(tmp / "npz"))
    shutil.rmtree(tmp / "npz")
    if damage:
        damage(d)
    return d


def ckpt(tmp: Path, done: Path, edit=None, raw: bytes | None = None) -> Path:
    """A copy of the finished run, its checkpoint edited (a dict -> dict) or replaced by bytes."""
    out = tmp / "run"
    shutil.copytree(done, out)
    p = out / "checkpoint.pt"
    if raw is not None:
        p.write_bytes(raw(p.read_bytes()) if callable(raw) else raw)
    elif edit is not None:
        torch.save(edit(torch.load(p, weights_only=False)), p)
    return out


def drop(*keys):
    return lambda s: {k: v for k, v in s.items() if k not in keys}


def smnist(data):
    return [*RUN, "--task", "smnist", "--data-dir", data, "--out", data.parent / "out"]


def scifar(data):
    return [*RUN, "--task", "scifar10", "--gray", "--data-dir", data,
            "--out", data.parent / "out"]


def resume(out, *more):
    return ["run", "--resume", "--quiet", "--out", out, *more]


CASES = {  # id: (make (tmp, done_run) -> command, a phrase the error line must hold)
    # IDX files (smnist)
    "idx-truncated": (lambda t, r: smnist(damaged(t, "train-images-idx3-ubyte.gz",
                                                  regz(lambda b: b[:5000]))), "truncated IDX"),
    "idx-wrong-magic": (lambda t, r: smnist(damaged(t, "t10k-labels-idx1-ubyte.gz",
                                                    regz(lambda b: b"\0\0\x08\x03" + b[4:]))),
                        "wrong magic number"),
    "idx-count-mismatch": (lambda t, r: smnist(damaged(t, "t10k-labels-idx1-ubyte.gz",
                                                       regz(lambda b: b[:4] + (5).to_bytes(4, "big")
                                                            + b[8:13]))), "count mismatch"),
    "idx-label-range": (lambda t, r: smnist(damaged(t, "train-labels-idx1-ubyte.gz",
                                                    regz(lambda b: b[:8] + b"\x0c" + b[9:]))),
                        "out of range"),
    "idx-gzip-garbage": (lambda t, r: smnist(damaged(t, "train-images-idx3-ubyte.gz",
                                                     lambda b: b"garbage")), "corrupt gzip"),
    "idx-gzip-cut": (lambda t, r: smnist(damaged(t, "train-images-idx3-ubyte.gz",
                                                 lambda b: b[:len(b) // 2])), "corrupt gzip"),
    "idx-image-size": (lambda t, r: smnist(mnist(t, shape=(14, 14))), "wrong image size"),
    "idx-missing-labels": (lambda t, r: smnist(_unlink(mnist(t) / "t10k-labels-idx1-ubyte.gz")),
                           "missing file"),
    "idx-train-empty": (lambda t, r: smnist(mnist(t, n_train=0)), "no images"),
    "idx-test-empty": (lambda t, r: smnist(mnist(t, n_test=0)), "no images"),
    "idx-train-empty-downsample": (lambda t, r: [*smnist(mnist(t, n_train=0)), "--downsample", 2],
                                   "no images"),
    "idx-one-train-image": (lambda t, r: smnist(mnist(t, n_train=1)), "at least 2"),
    "data-dir-missing": (lambda t, r: smnist(t / "nowhere"), "does not exist"),
    "data-dir-is-a-file": (lambda t, r: smnist(_file(t / "data.txt")), "data.txt"),
    # CIFAR-10 npz and pickles
    "npz-no-y": (lambda t, r: scifar(cifar_npz(t, x=np.zeros((4, 32, 32, 3), np.uint8))),
                 "lacks key"),
    "npz-float-x": (lambda t, r: scifar(cifar_npz(t, x=np.zeros((4, 32, 32, 3), np.float32),
                                                  y=np.zeros(4, np.int64))), "bad array x"),
    "npz-corrupt": (lambda t, r: scifar(_write(cifar_npz(t) / "train.npz", b"PK\x03\x04 x").parent),
                    "corrupt npz"),
    "npz-test-empty": (lambda t, r: scifar(cifar_npz(t, x=np.zeros((0, 32, 32, 3), np.uint8),
                                                     y=np.zeros(0, np.int64))), "no images"),
    "pickle-corrupt": (lambda t, r: scifar(cifar_batches(
        t, lambda d: (d / "data_batch_2").write_bytes(b"\x80\x04 not a pickle"))), "corrupt pickle"),
    "pickle-missing-batch": (lambda t, r: scifar(cifar_batches(
        t, lambda d: (d / "test_batch").unlink())), "missing file"),
    "pickle-bad-shape": (lambda t, r: scifar(cifar_batches(
        t, lambda d: (d / "data_batch_1").write_bytes(pickle.dumps(
            {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]})))), "bad CIFAR batch"),
    # checkpoints: empty, truncated, foreign, edited
    "resume-empty-checkpoint": (lambda t, r: resume(ckpt(t, r, raw=b"")), "not a readable"),
    "resume-truncated-checkpoint": (lambda t, r: resume(ckpt(t, r, raw=lambda b: b[:len(b) // 2])),
                                    "not a readable"),
    "resume-foreign-checkpoint": (lambda t, r: resume(ckpt(t, r, edit=lambda s: {"w": 1})),
                                  "not a qlam-qiskit run"),
    "resume-unknown-config-field": (lambda t, r: resume(ckpt(t, r, edit=lambda s: {
        **s, "model_config": {**s["model_config"], "warp": 9}})), "model_config"),
    "resume-no-optimizer": (lambda t, r: resume(ckpt(t, r, edit=drop("optimizer")), "--epochs", 3),
                            "optimizer"),
    "resume-wrong-weights": (lambda t, r: resume(ckpt(t, r, edit=lambda s: {
        **s, "model": {"w": torch.zeros(2)}}), "--epochs", 3), "weights"),
    "eval-truncated-checkpoint": (lambda t, r: ["eval", "--backend", "aer", "--checkpoint",
                                                ckpt(t, r, raw=lambda b: b[:100])], "not a readable"),
    "export-empty-checkpoint": (lambda t, r: ["export", "--out", t / "x", "--checkpoint",
                                              ckpt(t, r, raw=b"")], "not a readable"),
    "export-no-data-record": (lambda t, r: ["export", "--out", t / "x", "--checkpoint",
                                            ckpt(t, r, edit=drop("data"))], "data"),
    "report-garbage-checkpoint": (lambda t, r: ["report", "--coupling-map", "line:3", "--out",
                                                t / "x", "--checkpoint",
                                                ckpt(t, r, raw=b"\x80\x02garbage")], "not a readable"),
    # resume rules
    "resume-fewer-epochs": (lambda t, r: resume(ckpt(t, r), "--epochs", 1), "--epochs 1"),
    "resume-with-qubits": (lambda t, r: resume(ckpt(t, r), "--epochs", 3, "--qubits", 5),
                           "--qubits"),
    "resume-with-seed": (lambda t, r: resume(ckpt(t, r), "--epochs", 3, "--seed", 7), "--seed"),
    "resume-complete": (lambda t, r: resume(ckpt(t, r)), "already complete"),
    "resume-other-backend": (lambda t, r: resume(ckpt(t, r), "--backend", "aer"),
                             "--backend statevector"),
    # devices and options
    "device-gpu": (lambda t, r: [*RUN, "--device", "gpu", "--out", t / "o"], "--device gpu"),
    "device-mps": (lambda t, r: [*RUN, "--device", "mps", "--out", t / "o"], "--device mps"),
    "device-meta": (lambda t, r: [*RUN, "--device", "meta", "--out", t / "o"], "--device meta"),
    "device-cuda-x": (lambda t, r: [*RUN, "--device", "cuda:x", "--out", t / "o"], "--device cuda:x"),
    "qubits-0": (lambda t, r: [*RUN, "--qubits", 0, "--out", t / "o"], "--qubits"),
    "task-unknown": (lambda t, r: [*RUN, "--task", "mnist-huge", "--out", t / "o"], "--task"),
    "backend-unknown": (lambda t, r: [*RUN, "--backend", "nope", "--out", t / "o"], "unknown backend"),
    "patch-does-not-divide": (lambda t, r: [*RUN, "--patch", 5, "--out", t / "o"], "--patch 5"),
    "out-is-a-file": (lambda t, r: [*RUN, "--out", _file(t / "o")], "--out"),
    "cell-file-missing": (lambda t, r: [*RUN, "--cell", t / "cell.qpy", "--out", t / "o"],
                          "cell.qpy"),
    "eval-backend-unknown": (lambda t, r: ["eval", "--checkpoint", ckpt(t, r), "--backend", "nope"],
                             "unknown backend"),
    "report-steps-bad": (lambda t, r: ["report", "--coupling-map", "ring:3", "--steps", "1,x",
                                       "--out", t / "x"], "--steps"),
    "limit-train-word": (lambda t, r: [*RUN, "--limit-train", "many", "--out", t / "o"],
                         "--limit-train"),
}


def _unlink(p: Path) -> Path:
    p.unlink()
    return p.parent


def _file(p: Path) -> Path:
    p.write_text("not a folder\n")
    return p


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_the_table_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_is_one_line_and_touches_nothing(case, tmp_path, done_run, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    make, want = CASES[case]
    args = [str(a) for a in make(tmp_path, done_run)]
    before, run_before = tree(tmp_path), tree(done_run)
    res = CliRunner().invoke(main, args)
    lines = res.stderr.splitlines()
    assert res.exit_code not in (0, None) and isinstance(res.exception, SystemExit), \
        (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output, res.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert want in lines[0], lines[0]
    assert tree(tmp_path) == before, "files changed"
    assert tree(done_run) == run_before
