"""``run`` under torchrun: two CPU processes (gloo) train one run, data-parallel, to the weights
one process reaches with the same global batches; one set of run files; resume across world sizes.

The models run in complex128: the learned bases have angles whose gradient is exactly zero (a
last RZ before a Z measurement), and in complex64 their float32 round-off (~1e-10) has a sign that
depends on summation order, which AdamW turns into steps of ~1e-3 whatever the number of
processes. In complex128 that round-off is ~1e-19 and the comparison below holds to 1e-7.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from datafiles import make_mnist

from qlam_qiskit.cli.main import main
from qlam_qiskit.io import RUN_FILES, RunLock
from qlam_qiskit.models import ModelConfig
from qlam_qiskit.training.distributed import SINGLE, Group, process_group
from qlam_qiskit.training.loop import shard
from qlam_qiskit.training.run import MODEL_KINDS, build_model

# 41 train images in batches of 8: five full batches and a last one of 1 sample, so in two
# processes the last step leaves rank 1 without a sample (it joins at weight 0); 13 test images
# split 7 / 6 between the ranks.
TINY = ["--task", "smnist", "--downsample", "7", "--limit-train", "41", "--limit-test", "13",
        "--layers", "1", "--heads", "2", "--qubits", "2", "--d-model", "8", "--batch-size", "8",
        "--dtype", "complex128", "--threads", "1", "--quiet"]
TOL = 1e-5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    make_mnist(root / "mnist")
    return root


def one(*args) -> None:
    """A one-process run, in this process."""
    res = CliRunner().invoke(main, ["run", *[str(a) for a in args]])
    assert res.exit_code == 0, (res.output, res.exception)


def torchrun(*args, n: int = 2, check: bool = True) -> subprocess.CompletedProcess:
    """``qlam-qiskit run`` in ``n`` processes started by torchrun (torch.distributed.run)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(n), "-m", "qlam_qiskit", "run", *[str(a) for a in args]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def max_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()  # no "module." prefix from the DDP wrapper
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory) -> Path:
    """One process, 2 epochs; two processes, 2 epochs; one process, 1 epoch."""
    root = tmp_path_factory.mktemp("runs")
    one(*TINY, "--data-dir", data_dir, "--epochs", 2, "--out", root / "one")
    one(*TINY, "--data-dir", data_dir, "--epochs", 1, "--out", root / "one-e1")
    res = torchrun(*TINY, "--data-dir", data_dir, "--epochs", 2, "--out", root / "two")
    assert res.stdout.count("test accuracy") == 1  # rank 0 alone prints
    assert res.stdout.count("qlam-qiskit run: task") == 1 and "x 2 processes" in res.stdout
    return root


def test_two_processes_reach_the_one_process_weights(runs: Path) -> None:
    assert max_diff(runs / "one", runs / "two") < TOL


def test_two_processes_write_one_set_of_run_files(runs: Path) -> None:
    assert sorted(p.name for p in (runs / "two").iterdir()) == sorted(RUN_FILES)
    ckpt = torch.load(runs / "two" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2 and [r["epoch"] for r in ckpt["metrics"]] == [1, 2]
    two, one_ = (json.loads((runs / r / "result.json").read_text()) for r in ("two", "one"))
    assert two["world_size"] == 2 and one_["world_size"] == 1
    assert two["train_size"] == 41 and two["test_size"] == 13
    # metrics are summed over the ranks: the same numbers as one process
    assert two["test_accuracy"] == one_["test_accuracy"]
    assert two["test_loss"] == pytest.approx(one_["test_loss"], rel=1e-6)
    for a, b in zip(rows(runs / "two"), rows(runs / "one"), strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def test_a_two_process_run_resumes_in_one_process(runs: Path) -> None:
    for name in ("one", "two"):  # both trained on to 3 epochs in one process
        shutil.copytree(runs / name, runs / f"{name}-e3")
        one("--resume", "--out", runs / f"{name}-e3", "--epochs", 3, "--quiet", "--threads", 1)
    assert json.loads((runs / "two-e3" / "result.json").read_text())["world_size"] == 1
    assert len(rows(runs / "two-e3")) == 3
    assert max_diff(runs / "one-e3", runs / "two-e3") < TOL
    assert max_diff(runs / "two", runs / "two-e3") > 1e-4  # it did train on


def test_a_one_process_run_resumes_in_two_processes(runs: Path) -> None:
    shutil.copytree(runs / "one-e1", runs / "one-e1-two")
    shutil.copytree(runs / "one-e1", runs / "one-e1-one")
    torchrun("--resume", "--out", runs / "one-e1-two", "--epochs", 2, "--quiet", "--threads", 1)
    one("--resume", "--out", runs / "one-e1-one", "--epochs", 2, "--quiet", "--threads", 1)
    assert sorted(p.name for p in (runs / "one-e1-two").iterdir()) == sorted(RUN_FILES)
    assert json.loads((runs / "one-e1-two" / "result.json").read_text())["world_size"] == 2
    assert max_diff(runs / "one-e1-one", runs / "one-e1-two") < TOL


def test_an_lstm_trains_in_two_processes(data_dir: Path, tmp_path: Path) -> None:
    args = [*TINY[:TINY.index("--layers")], "--model", "lstm", "--d-model", "8", "--batch-size",
            "8", "--threads", "1", "--quiet", "--data-dir", data_dir, "--epochs", 1]
    one(*args, "--out", tmp_path / "one")
    torchrun(*args, "--out", tmp_path / "two")
    assert max_diff(tmp_path / "one", tmp_path / "two") < TOL


def test_a_rank_0_failure_stops_every_rank(data_dir: Path, tmp_path: Path) -> None:
    """Rank 0 cannot take the folder (another run holds it): both processes exit non-zero with
    one line each, nothing is written, and no rank waits for the other."""
    out = tmp_path / "busy"
    with RunLock(out):
        res = torchrun(*TINY, "--data-dir", data_dir, "--epochs", 1, "--out", out, check=False)
    assert res.returncode != 0
    assert "in use by another qlam-qiskit run" in res.stderr
    assert "rank 0 of the 2 processes failed" in res.stderr
    ours = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert len(ours) == 2 and "qlam_qiskit/" not in res.stderr  # a line per rank, no traceback
    assert sorted(p.name for p in out.iterdir()) == []


def test_primitives_backends_refuse_several_processes(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = CliRunner().invoke(main, ["run", "--backend", "aer", "--patch", "49", "--limit-train",
                                    "8", "--epochs", "1", "--out", str(tmp_path / "p")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "Estimator primitives in one process" in res.output and "--nproc-per-node 1" in res.output


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_parameter_gets_a_gradient(kind: str) -> None:
    """DDP runs with find_unused_parameters=False: a parameter without a gradient would stop
    the second step of every multi-process run."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_input=1, num_classes=10, d_model=8, layers=1, heads=2, qubits=2,
                      max_len=16)
    model = build_model(kind, cfg)
    nn.functional.cross_entropy(model(torch.randn(3, 16, 1)), torch.arange(3)).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_shards_cover_each_global_batch_once() -> None:
    idx = torch.arange(10, 15)
    parts = [shard(idx, Group(r, 2)) for r in range(2)]
    assert torch.equal(torch.sort(torch.cat([p for p, _ in parts])).values, idx)
    assert sum(w for _, w in parts) == pytest.approx(2.0)  # weights average to 1 over ranks
    whole, w = shard(idx, SINGLE)
    assert torch.equal(whole, idx) and w == 1.0
    empty, w = shard(torch.tensor([7]), Group(1, 2))
    assert w == 0.0 and len(empty) == 1  # joins the all-reduce, contributes nothing


def test_cuda_under_torchrun_takes_the_local_rank(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(Exception, match="--device cuda; each process takes cuda:LOCAL_RANK"):
        with process_group("cuda:1"):
            pass
    monkeypatch.delenv("RANK")
    with pytest.raises(Exception, match="start multi-process runs with torchrun"):
        with process_group("cpu"):
            pass
