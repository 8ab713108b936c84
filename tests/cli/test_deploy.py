"""The primitives commands end to end on tiny runs: run on aer / fake_fez, eval, export, account."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from qiskit import qasm3, qpy
from qiskit.quantum_info import SparsePauliOp, Statevector

from qlam_qiskit.cli.main import main

from clirunner import invoke, ok

TINY = ["--limit-train", "16", "--limit-test", "12", "--batch-size", "8", "--qubits", "2",
        "--d-model", "4", "--patch", "49", "--epochs", "1", "--quiet"]


def one_line_error(res, want: str) -> None:
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and want in lines[0], res.output


@pytest.fixture(autouse=True)
def isa_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QLAM_CACHE_DIR", str(tmp_path / "isa"))


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory) -> Path:
    """A hardware-compatible QLAM trained on the exact engine."""
    out = tmp_path_factory.mktemp("runs") / "sv"
    ok("run", *TINY, "--layers", 1, "--heads", 1, "--pool", "last", "--out", out)
    return out


def test_primitives_run_resumes_on_its_backend_with_its_settings(tmp_path):
    out = tmp_path / "r"
    ok("run", "--backend", "aer", *TINY, "--gradient", "spsa", "--out", out)
    res = ok("run", "--resume", "--epochs", "2", "--out", out, "--quiet")  # no --backend given
    assert "backend aer" in res.output
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == "aer" and result["gradient"] == "spsa" and result["epochs"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    one_line_error(invoke("run", "--resume", "--backend", "fake_fez", "--out", out),
                   "resume with --backend aer")


@pytest.mark.parametrize("backend", ["aer", "fake_fez"])
def test_run_on_primitives_completes_with_a_cost_report(backend, tmp_path):
    out = tmp_path / backend
    res = ok("run", "--backend", backend, *TINY, "--out", out)
    assert "circuit executions per step" in res.output and "--train-scope head" in res.output
    assert "EstimatorQNN + TorchConnector" in res.output and "test accuracy" in res.output
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == backend and result["model_config"]["heads"] == 1
    assert result["model_config"]["pool"] == "last" and result["data"]["patch"] == 49
    assert result["qnn_calls"]["backward"] == 2  # 16 samples / batch 8, one gradient PUB each
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and "blocks.0.mixer.mix" in ckpt["model"]


def test_head_scope_with_spsa_freezes_the_circuit(tmp_path):
    out = tmp_path / "head"
    res = ok("run", "--backend", "aer", *TINY, "--train-scope", "head", "--gradient", "spsa",
             "--out", out)
    assert "(1 forward + 0 for the spsa gradient" in res.output
    result = json.loads((out / "result.json").read_text())
    assert result["qnn_calls"]["backward"] == 0
    init = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    torch.manual_seed(0)
    from qlam_qiskit.models import ModelConfig
    from qlam_qiskit.models.primitive import PrimitiveQLAM
    fresh = PrimitiveQLAM(ModelConfig(**result["model_config"])).state_dict()
    assert torch.equal(init["blocks.0.mixer.mix"], fresh["blocks.0.mixer.mix"])  # frozen
    assert not torch.equal(init["head.weight"], fresh["head.weight"])  # trained


def test_primitives_refuse_a_non_hardware_shape(tmp_path):
    one_line_error(invoke("run", "--backend", "aer", *TINY, "--heads", 2, "--out", tmp_path / "x"),
                   "--heads 2: primitives backends train the hardware-compatible QLAM")


def test_eval_on_aer_equals_the_exact_engine(exact_run, tmp_path):
    res = ok("eval", "--checkpoint", exact_run, "--backend", "aer", "--out", tmp_path)
    assert "drop +0.0000" in res.output
    rep = json.loads((tmp_path / "eval.json").read_text())
    assert rep["max_logit_diff"] < 1e-6 and rep["samples"] == 12
    np.testing.assert_allclose(rep["logits"], rep["exact_logits"], atol=1e-6)
    assert rep["accuracy"] == rep["exact_accuracy"]


def test_eval_on_fake_fez_reports_an_accuracy(exact_run, tmp_path):
    res = ok("eval", "--checkpoint", exact_run, "--backend", "fake_fez", "--limit", 8,
             "--out", tmp_path)
    rep = json.loads((tmp_path / "eval.json").read_text())
    assert rep["samples"] == 8 and 0 <= rep["accuracy"] <= 1
    assert rep["max_logit_diff"] > 1e-6  # device noise moves the logits
    assert "accuracy" in res.output and "vs exact" in res.output


def test_eval_refuses_a_multi_memory_checkpoint(tmp_path):
    out = tmp_path / "mean"
    ok("run", *TINY, "--heads", 2, "--out", out)
    one_line_error(invoke("eval", "--checkpoint", out, "--backend", "aer"),
                   "not hardware-compatible (layers=2, heads=2, pool=mean)")
    one_line_error(invoke("eval", "--checkpoint", tmp_path / "none", "--backend", "aer"),
                   "not found")


@pytest.mark.parametrize("fmt", ["qpy", "qasm3"])
def test_export_is_reproduced_by_qiskit_statevector(exact_run, tmp_path, fmt):
    ok("export", "--checkpoint", exact_run, "--sample", 2, "--format", fmt, "--out", tmp_path)
    if fmt == "qpy":
        with open(tmp_path / "sample2.qpy", "rb") as f:
            circuit = qpy.load(f)[0]
    else:
        circuit = qasm3.loads((tmp_path / "sample2.qasm").read_text())
    assert circuit.num_parameters == 0
    obs = json.loads((tmp_path / "sample2_observables.json").read_text())["observables"]
    values = json.loads((tmp_path / "sample2_values.json").read_text())["expectation_values"]
    psi = Statevector(circuit)
    got = [psi.expectation_value(SparsePauliOp(o["labels"], o["coeffs"])).real for o in obs]
    assert len(got) == len(values) > 0
    np.testing.assert_allclose(got, values, atol=1e-9)


def test_account_save_never_echoes_the_token(tmp_path, monkeypatch):
    from qlam_qiskit.backends.primitives import devices as targets

    monkeypatch.setattr(targets.socket, "create_connection",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(101, "unreachable")))
    secret = "tok-" + "x9" * 20
    accounts = tmp_path / "acc.json"
    res = ok("account", "save", "--filename", accounts, env={"QISKIT_IBM_TOKEN": secret})
    assert secret not in res.output
    assert res.output.startswith("account saved as the default in ")
    assert "; not verified: cannot reach quantum.cloud.ibm.com" in res.output
    assert secret in accounts.read_text()  # stored only where Qiskit keeps accounts
    res = CliRunner().invoke(main, ["account", "save", "--filename", str(accounts)],
                             input=secret + "\n", env={"QISKIT_IBM_TOKEN": ""})
    assert secret not in res.output and res.exit_code == 1  # exists: --overwrite needed
    assert "could not save the account" in res.output


def test_run_with_coupling_entanglement_records_its_layout(tmp_path):
    out = tmp_path / "coupled"
    res = ok("run", "--backend", "fake_fez", *TINY, "--qubits", 3, "--entangler", "cz",
             "--entanglement", "coupling", "--out", out)
    result = json.loads((out / "result.json").read_text())
    assert len(result["layout"]) == 3 and result["model_config"]["entanglement"] == "linear"
    assert result["transpile"]["initial_layout"] == result["layout"]
    assert ", 8 two-qubit gates," in res.output  # T=4 tokens x 2 path pairs: no SWAPs
    one_line_error(invoke("run", *TINY, "--entanglement", "coupling", "--out", tmp_path / "sv"),
                   "--entanglement coupling follows a device's coupling map")
