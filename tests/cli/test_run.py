"""The ``qlam-qiskit`` command line on tiny runs: outputs, checkpoint, resume, errors, backends."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import qlam_qiskit.training.loop as loop
from qlam_qiskit.data import DATA_ENV, load_task
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.training.loop import evaluate

from clirunner import invoke, ok

TINY = ["--limit-train", "48", "--limit-test", "32", "--batch-size", "16", "--layers", "1",
        "--heads", "2", "--qubits", "3", "--d-model", "8", "--quiet"]
TIMING = {"seconds", "sample_steps_per_s"}  # wall-clock fields: the only ones allowed to differ


def load_ckpt(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """An uninterrupted two-epoch run of the embedded task."""
    out = tmp_path_factory.mktemp("runs") / "full"
    res = ok("run", *TINY, "--epochs", 2, "--seed", 5, "--out", out)
    assert "test accuracy" in res.output and str(out) in res.output
    return out


def test_run_writes_result_metrics_and_checkpoint(full_run: Path):
    result = json.loads((full_run / "result.json").read_text())
    for key in ("task", "backend", "test_accuracy", "num_params", "epochs", "train_seconds"):
        assert key in result, key
    assert result["task"] == "mnist-mini" and result["backend"] == "statevector"
    assert result["epochs"] == 2 and result["train_size"] == 48 and result["test_size"] == 32
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["train_seconds"] > 0
    rows = metrics(full_run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) for r in rows)

    ckpt = load_ckpt(full_run)
    assert ckpt["epoch"] == 2 and ckpt["metrics"] == rows
    model = QLAMClassifier(ModelConfig(**ckpt["model_config"]))
    assert isinstance(ckpt["model"], dict)
    model.load_state_dict(ckpt["model"])
    assert sum(p.numel() for p in model.parameters()) == result["num_params"]
    cfg = ckpt["model_config"]
    assert (cfg["layers"], cfg["heads"], cfg["qubits"], cfg["d_model"]) == (1, 2, 3, 8)
    d = ckpt["data"]
    data = load_task(d["task"], d["data_dir"], gray=d["gray"], limit_train=d["limit_train"],
                     limit_test=d["limit_test"], seed=ckpt["train_config"]["seed"])
    loss, acc = evaluate(model, data.x_test, data.y_test)
    assert acc == result["test_accuracy"]
    assert loss == pytest.approx(result["test_loss"], rel=1e-6)


def test_interrupted_run_resumes_to_the_same_weights(full_run: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "interrupted"
    real_save_jsonl = loop.save_jsonl

    def save_then_interrupt(rows, path):
        real_save_jsonl(rows, path)
        raise KeyboardInterrupt  # Ctrl-C right after epoch 1 is written

    monkeypatch.setattr(loop, "save_jsonl", save_then_interrupt)
    res = invoke("run", *TINY, "--epochs", 2, "--seed", 5, "--out", out)
    assert res.exit_code == 130 and "Traceback" not in res.output  # 128 + SIGINT, as shells expect
    assert f"interrupted; continue with: qlam-qiskit run --resume --out {out}" in res.output
    assert load_ckpt(out)["epoch"] == 1 and not (out / "result.json").exists()
    monkeypatch.setattr(loop, "save_jsonl", real_save_jsonl)

    ok("run", "--resume", "--quiet", "--out", out)
    a, b = load_ckpt(out), load_ckpt(full_run)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert without_timing(metrics(out)) == without_timing(metrics(full_run))
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (out, full_run))
    assert (ra["test_accuracy"], ra["test_loss"]) == (rb["test_accuracy"], rb["test_loss"])


def test_resume_with_more_epochs_continues_the_run(tmp_path: Path):
    """--epochs 1, then --resume --epochs 2: the first epoch is kept and one more is trained.

    (Not equal to an uninterrupted 2-epoch run: the warmup-cosine schedule of the first run was
    planned for 1 epoch, so its learning rates differ. An interrupted run resumes exactly; see above.)
    """
    out = tmp_path / "extend"
    ok("run", *TINY, "--epochs", 1, "--seed", 5, "--out", out)
    first = metrics(out)
    weights1 = load_ckpt(out)["model"]
    ok("run", "--resume", "--epochs", 2, "--quiet", "--out", out)
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first[0]
    ckpt = load_ckpt(out)
    assert ckpt["epoch"] == 2 and ckpt["train_config"]["epochs"] == 2
    assert any(not torch.equal(ckpt["model"][k], weights1[k]) for k in weights1)
    assert json.loads((out / "result.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("case", ["unknown_backend", "aer_gpu", "patch", "cuda", "resume_no_ckpt",
                                  "resume_no_out", "out_exists", "smnist_missing",
                                  "smnist_no_dir", "qubits_0", "bad_task"])
def test_errors_are_one_line_without_traceback(case, full_run: Path, tmp_path: Path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv(DATA_ENV, raising=False)
    args, want, code = {
        "unknown_backend": (["--backend", "nope"], "unknown backend 'nope'", 1),
        "aer_gpu": (["--backend", "aer_gpu"], "aer_gpu: ", 1),
        "patch": (["--patch", "5"], "--patch 5 does not divide the sequence length 196", 1),
        "cuda": (["--device", "cuda"], "no CUDA device is visible", 1),
        "resume_no_ckpt": (["--resume", "--out", empty], "nothing to resume", 1),
        "resume_no_out": (["--resume"], "--resume needs --out", 1),
        "out_exists": (["--out", full_run], "already holds a run; pass --resume", 1),
        "smnist_missing": (["--task", "smnist", "--data-dir", empty], "missing file", 1),
        "smnist_no_dir": (["--task", "smnist"], "no data for task smnist", 1),
        "qubits_0": (["--qubits", "0"], "Invalid value for '--qubits'", 2),
        "bad_task": (["--task", "mnist-huge"], "Invalid value for '--task'", 2),
    }[case]
    if case == "cuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if case == "aer_gpu":
        from qlam_qiskit.backends.primitives import devices as targets
        if targets.gpu_problem() is None:
            pytest.skip("a working qiskit-aer GPU build is here: aer_gpu is not refused")
    before = sorted(p.name for p in full_run.iterdir())
    res = invoke("run", *TINY, "--epochs", 1, *args)
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit)  # no uncaught exception
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and want in errors[0], res.output
    if code == 1:  # our own errors: the error line is all that is printed
        assert res.output.strip().splitlines() == errors
    assert sorted(p.name for p in full_run.iterdir()) == before
    assert list(empty.iterdir()) == []


def test_backends_command_lists_every_backend():
    res = ok("backends")
    names = [line.split()[0] for line in res.output.splitlines() if line and not line[0].isspace()]
    assert names == ["statevector", "aer", "aer_gpu", "fake_<device>", "ibm_<device>"]
    assert "available here (ready)" in res.output  # statevector, aer
    assert "account save" in res.output  # what ibm_<device> needs


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Gzipped IDX image (magic 2051) and label (magic 2049) files, as MNIST ships them."""
    n, h, w = images.shape
    img = b"".join(v.to_bytes(4, "big") for v in (2051, n, h, w)) + images.tobytes()
    lab = b"".join(v.to_bytes(4, "big") for v in (2049, n)) + labels.astype(np.uint8).tobytes()
    for kind, buf in (("images-idx3", img), ("labels-idx1", lab)):
        with gzip.open(folder / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
            f.write(buf)


def test_smnist_trains_on_idx_files(tmp_path: Path):
    data_dir = tmp_path / "data" / "mnist"  # found as a subfolder of --data-dir
    data_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(data_dir, prefix, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  np.arange(n) % 10)
    out = tmp_path / "run"
    ok("run", "--task", "smnist", "--data-dir", tmp_path / "data", "--limit-train", 24,
       "--limit-test", 10, "--epochs", 1, "--batch-size", 12, "--layers", 1, "--heads", 1,
       "--qubits", 2, "--d-model", 4, "--quiet", "--out", out)
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "smnist" and result["seq_len"] == 784
    assert result["train_size"] == 24 and result["test_size"] == 10
    assert len(metrics(out)) == 1
    ckpt = load_ckpt(out)
    assert ckpt["data"]["data_dir"] == str(tmp_path / "data")
    assert ckpt["model_config"]["d_input"] == 1 and ckpt["model_config"]["num_classes"] == 10
