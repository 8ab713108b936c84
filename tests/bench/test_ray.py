"""``bench --executor ray``: a grid run as tasks on a local Ray instance gives the local executor's
table (CPU runs with fixed seeds and one thread repeat exactly), resumes like it, and a missing
Ray or a stray --address is one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import ray  # noqa: F401 - in the test extra: this module needs it, it does not skip without it
from click.testing import CliRunner
from datafiles import make_mnist

from qlam_qiskit.bench.executors import cell_resources
from qlam_qiskit.bench.protocol import PROTOCOLS
from qlam_qiskit.cli.main import main

TIMING = {"train_seconds", "sample_steps_per_s"}


def _bench(*args) -> object:
    return CliRunner().invoke(main, ["bench", *[str(a) for a in args]])


def _grid_args(root: Path, out: Path, *extra) -> list:
    return ["--tasks", "smnist", "--models", "qlam,lstm", "--seeds", "0", "--downsample", "7",
            "--epochs", "1", "--limit-train", "27", "--limit-test", "10", "--jobs", "2",
            "--data-dir", root, "--out", out, *extra]


def _accuracy_table(out: Path) -> str:
    """table.md up to the per-run table (whose last two columns are wall-clock timings)."""
    return (out / "table.md").read_text().split("Per run")[0]


def _rows(out: Path) -> list[dict]:
    rows = json.loads((out / "results.json").read_text())["rows"]
    return sorted(({k: v for k, v in r.items() if k not in TIMING} for r in rows),
                  key=lambda r: r["model"])


@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The same 2-cell grid run by the local executor and by a local Ray instance."""
    root = tmp_path_factory.mktemp("ray")
    make_mnist(root / "mnist")
    local, on_ray = root / "local", root / "ray"
    res = _bench(*_grid_args(root, local))
    assert res.exit_code == 0, res.output
    res = _bench(*_grid_args(root, on_ray, "--executor", "ray"))
    assert res.exit_code == 0, (res.output, res.exception)
    assert "Ray tasks on a local instance, each with 1 CPU(s)" in res.output
    return root, local, on_ray


def test_ray_gives_the_local_executors_table(grids) -> None:
    _, local, on_ray = grids
    assert len(list((on_ray / "runs").glob("*/result.json"))) == 2
    assert _accuracy_table(on_ray) == _accuracy_table(local)
    assert "| qlam |" in _accuracy_table(on_ray) and "| lstm |" in _accuracy_table(on_ray)
    assert _rows(on_ray) == _rows(local)
    assert (on_ray / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_ray_resumes_an_interrupted_grid(grids) -> None:
    root, local, on_ray = grids
    cut = on_ray / "runs" / "smnist-d7-lstm-s0"
    (cut / "result.json").unlink()  # as if cut short after its last checkpoint
    kept = on_ray / "runs" / "smnist-d7-qlam-s0" / "result.json"
    stamp = kept.stat().st_mtime_ns
    res = _bench(*_grid_args(root, on_ray, "--executor", "ray"))
    assert res.exit_code == 0, (res.output, res.exception)
    assert "2 runs (1 finished)" in res.output
    assert kept.stat().st_mtime_ns == stamp  # finished cells are not run again
    assert (cut / "run.log").read_text().count("qlam-qiskit run:") == 2  # resumed, not redone
    assert _rows(on_ray) == _rows(local)


def test_cells_ask_for_a_gpu_or_their_threads() -> None:
    cpu = PROTOCOLS["cpu"]
    assert cell_resources(cpu, 3) == {"num_cpus": 3}
    assert cell_resources(PROTOCOLS["gpu"], 3) == {"num_gpus": 1}


def test_ray_missing_is_one_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    res = _bench("--executor", "ray", "--tasks", "smnist", "--models", "gru", "--seeds", "0",
                 "--out", tmp_path / "g")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert 'pip install "qlam-qiskit[ray]"' in res.output
    assert not (tmp_path / "g").exists()


def test_address_without_ray_executor_is_refused(tmp_path: Path) -> None:
    res = _bench("--address", "auto", "--out", tmp_path / "g", "--dry-run")
    assert res.exit_code == 1 and "--executor ray" in res.output and "Traceback" not in res.output


def test_a_bad_address_is_one_line(tmp_path: Path) -> None:
    res = _bench("--executor", "ray", "--address", "127.0.0.1:1", "--tasks", "smnist",
                 "--models", "gru", "--seeds", "0", "--epochs", "1", "--limit-train", "9",
                 "--out", tmp_path / "g")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "--address 127.0.0.1:1: cannot join that Ray cluster" in res.output


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_ray():
    yield
    assert not ray.is_initialized()  # the executor stops the instance it started
