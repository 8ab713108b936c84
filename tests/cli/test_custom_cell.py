"""Your own cell circuit end to end: ``run --cell`` trains it on the exact engine, the checkpoint
keeps it, and ``eval``, ``export`` and ``report`` work on that run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import efficient_su2

from qlam_qiskit.circuits.custom import save_cell, cell_from_circuit
from qlam_qiskit.io import load_checkpoint

from clirunner import invoke, ok

SMALL = ["--limit-train", "16", "--limit-test", "6", "--batch-size", "8", "--d-model", "4",
         "--patch", "49", "--epochs", "1", "--quiet"]


def su2_cell(n: int = 3) -> QuantumCircuit:
    """RZ(x_q) data phases, then an efficient_su2 block whose angles are the shared weights w."""
    x = ParameterVector("x", n)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.rz(x[q], q)
    return qc.compose(efficient_su2(n, reps=1, parameter_prefix="w"))


@pytest.fixture(scope="module")
def cell_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("custom")
    save_cell(cell_from_circuit(su2_cell()), root / "cell.qpy")
    ok("run", "--cell", root / "cell.qpy", "--pool", "last", "--layers", 1, "--heads", 1,
       *SMALL, "--out", root / "run")
    return root


def test_run_with_a_library_cell_stores_it(cell_run: Path):
    state = load_checkpoint(cell_run / "run")
    assert state["model_config"]["cell"] == "custom" and state["model_config"]["qubits"] == 3
    with open(cell_run / "cell.qpy", "rb") as f:
        want = qpy.load(f)[0]
    from qlam_qiskit.training.plan import stored_cell

    assert stored_cell(state).circuit == want


def test_eval_on_aer_gives_the_exact_logits(cell_run: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("QLAM_CACHE_DIR", str(tmp_path / "isa"))
    ok("eval", "--checkpoint", cell_run / "run", "--backend", "aer", "--out", tmp_path)
    rep = json.loads((tmp_path / "eval.json").read_text())
    assert rep["samples"] == 6 and rep["max_logit_diff"] < 1e-6
    assert rep["prediction_agreement"] == 1.0


def test_export_and_report_read_the_stored_cell(cell_run: Path, tmp_path: Path):
    ok("export", "--checkpoint", cell_run / "run", "--out", tmp_path / "x")
    exported = json.loads((tmp_path / "x" / "sample0_observables.json").read_text())
    assert exported["num_qubits"] == 3
    res = ok("report", "--checkpoint", cell_run / "run", "--backend", "fake_fez", "--steps", "2",
             "--transpile-max", 2, "--out", tmp_path / "r")
    assert "custom circuit, 3 qubits, 3 input and" in res.output
    res = invoke("report", "--checkpoint", cell_run / "run", "--backend", "fake_fez",
                 "--qubits", 4, "--out", tmp_path / "r2")
    assert res.exit_code == 1 and "runs its own cell circuit: drop --qubits" in res.output


def test_cell_options_that_clash_are_refused(cell_run: Path, tmp_path: Path):
    res = invoke("run", "--cell", cell_run / "cell.qpy", "--qubits", 4, *SMALL,
                 "--out", tmp_path / "clash")
    assert res.exit_code == 1 and "--cell brings its own circuit: drop --qubits" in res.output
    res = invoke("run", "--cell", tmp_path / "missing.qpy", *SMALL, "--out", tmp_path / "m")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "clash").exists() and not (tmp_path / "m").exists()
