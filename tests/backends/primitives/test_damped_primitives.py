"""Damped memories on the primitives path: the damped cell (CRY, CX, mid-circuit reset per qubit)
through Aer's density-matrix Estimator and the parameter-shift QNN, against the exact engine's
Pauli-transfer scan and its autograd; a noisy fake device; and the CLI run, eval and export."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qlam_qiskit.backends import BackendError, resolve_backend
from qlam_qiskit.backends.primitives.estimator import aer_estimator, expectation_values
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.models.primitive import (PrimitiveQLAM, attach_backend, pauli_observables,
                                          sequence_template)

from clirunner import invoke, ok

pytest.importorskip("qiskit_aer")

DAMPED = ModelConfig(layers=1, heads=1, pool="last", qubits=2, d_model=6, queries=2, max_len=5,
                     dtype="complex128", memory="damped")
TINY = ["--limit-train", "16", "--limit-test", "8", "--batch-size", "8", "--qubits", "2",
        "--d-model", "4", "--patch", "49", "--epochs", "1", "--quiet"]


@pytest.fixture(autouse=True)
def isa_cache(tmp_path, monkeypatch):
    """Every test gets its own ISA cache folder."""
    monkeypatch.setenv("QLAM_CACHE_DIR", str(tmp_path / "isa"))


def models(cfg: ModelConfig = DAMPED, seed: int = 0) -> tuple[QLAMClassifier, PrimitiveQLAM]:
    """An exact damped classifier with every parameter moved off its initial value (damping
    γ ≈ 0.3 and 0.8 per token: strong enough to change every readout) and a PrimitiveQLAM
    loaded from its state dict."""
    torch.manual_seed(seed)
    exact = QLAMClassifier(cfg).double()
    with torch.no_grad():
        for p in exact.parameters():
            p.add_(0.3 * torch.randn_like(p))
        lay = exact.blocks[0].mixer
        lay.log_rate.copy_(torch.tensor([[-1.0, 0.5]]))  # rates 0.37, 1.65 per token
        lay.log_dt.fill_(-0.5)  # Δ = 0.61: angles of O(1)
    prim = PrimitiveQLAM(cfg).double()
    prim.load_state_dict(exact.state_dict())
    return exact, prim


def float64_qnn(prim: PrimitiveQLAM) -> None:
    """Run ``prim``'s circuit through its QNN in float64 both ways (TorchConnector is float32):
    forward by ``qnn.forward``, backward by its parameter-shift ``qnn.backward``."""
    qnn = prim.qnn

    class QNN(torch.autograd.Function):
        @staticmethod
        def forward(ctx, theta, w):  # (B, T·m), (P,) -> (B, E)
            ctx.save_for_backward(theta, w)
            return torch.from_numpy(qnn.forward(theta.detach().numpy(), w.detach().numpy()))

        @staticmethod
        def backward(ctx, g):  # g (B, E)
            theta, w = ctx.saved_tensors
            gi, gw = qnn.backward(theta.detach().numpy(),
                                  w.detach().numpy())  # (B, E, I), (B, E, P)
            return (torch.einsum("be,bei->bi", g, torch.from_numpy(gi)),
                    torch.einsum("be,bew->w", g, torch.from_numpy(gw)))

    prim.expectations = QNN.apply


def test_damped_template_is_the_damped_cell_with_cry_as_shiftable_rotations():
    _, prim = models()
    layer, t = prim.blocks[0].mixer, 3
    tpl = sequence_template(prim, t)
    ops = tpl.circuit.count_ops()
    assert tpl.circuit.num_qubits == 4 and ops["reset"] == 2 * t and "cry" not in ops
    assert [p.name for p in tpl.weights] == [p.name for p in layer.template.cell.weights] + \
        ["φ[0]", "φ[1]"]
    assert len(tpl.inputs) == t * len(layer.cell_template.inputs)
    assert set(tpl.circuit.parameters) == set(tpl.inputs) | set(tpl.weights)
    w = prim.circuit_weights()
    assert w.shape == (len(tpl.weights),)  # (P + n,): mixing angles, then φ = 2 asin √γ
    torch.testing.assert_close(torch.sin(w[-2:] / 2) ** 2, layer.damping()[0])
    prim.freeze_circuit()  # --train-scope head: the damping rates are circuit angles too
    assert not any(p.requires_grad for p in (layer.log_rate, layer.log_dt, layer.mix))
    assert layer.basis.requires_grad and prim.head.weight.requires_grad


@pytest.mark.parametrize("steps,gate,encoding,selective",
                         [(3, False, "rz", False), (5, True, "rz", False),
                          (3, False, "ry_rz", False), (3, False, "ry_rz", True)],
                         ids=["T3", "T5-gated", "T3-ry_rz", "T3-ry_rz-selective"])
def test_aer_logits_equal_the_exact_engine(steps, gate, encoding, selective):
    cfg = replace(DAMPED, gate=gate, encoding=encoding, selective=selective)
    exact, prim = models(cfg, seed=steps)
    qnn, compiled = attach_backend(prim, resolve_backend("aer"), steps)
    assert compiled.dynamic and compiled.circuit.count_ops()["reset"] == 2 * steps
    assert qnn.estimator.options.backend_options["method"] == "density_matrix"
    cell = prim.blocks[0].mixer.template.cell
    # selective: the damping angles are every token's inputs, not shared weights
    assert qnn.num_weights == len(cell.weights) + (0 if selective else 2)
    assert qnn.num_inputs == steps * (len(cell.inputs) + (2 if selective else 0))
    x = torch.randn(4, steps, 1, dtype=torch.float64)
    with torch.no_grad():
        got, want = prim(x), exact(x)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)
        back = QLAMClassifier(cfg).double()  # the state dict moves back to the exact model
        back.load_state_dict(prim.state_dict())
        np.testing.assert_allclose(back(x).numpy(), got.numpy(), atol=1e-10)
    assert (want - want.mean(0)).abs().max() > 1e-3  # the inputs matter: not a constant model


@pytest.mark.parametrize("selective", [False, True], ids=["shared-damping", "selective"])
def test_parameter_shift_gradients_equal_the_engine_autograd_in_float64(selective):
    """Every parameter's gradient, the upstream layers through the QNN's input gradients and
    mix, log_dt, log_rate through its weight gradients (with ``selective``: log_rate and the
    token map through the per-token damping angles' input gradients), equals the engine's
    autograd."""
    exact, prim = models(replace(DAMPED, selective=selective), seed=1)
    attach_backend(prim, resolve_backend("aer"), 3)
    float64_qnn(prim)
    x = torch.randn(3, 3, 1, dtype=torch.float64)
    prim(x).square().sum().backward()
    exact(x).square().sum().backward()
    worst = 0.0
    for (name, a), (_, b) in zip(prim.named_parameters(), exact.named_parameters()):
        assert a.grad is not None, name
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-8, err_msg=name)
        worst = max(worst, (a.grad - b.grad).abs().max().item())
    layer = exact.blocks[0].mixer
    for p in (layer.log_rate, layer.mix, layer.log_dt, layer.proj.weight) + \
            ((layer.select.weight,) if selective else ()):
        assert p.grad.abs().min() > 1e-4  # every one of them really depends on the circuit
    assert worst < 1e-8


def test_torch_connector_training_gradients_reach_the_damping_rates():
    """The training path (TorchConnector, float32) gives the engine's gradients, log_rate too."""
    exact, prim = models(seed=2)
    qnn, _ = attach_backend(prim, resolve_backend("aer"), 3)
    exact.float(), prim.float()
    x = torch.randn(4, 3, 1)
    exact(x).square().sum().backward()
    prim(x).square().sum().backward()
    assert qnn.calls["backward"] == 1
    for (name, a), (_, b) in zip(prim.named_parameters(), exact.named_parameters()):
        assert a.grad is not None, name
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=2e-4 *
                                   max(1.0, b.grad.abs().max().item()), err_msg=name)
    assert prim.blocks[0].mixer.log_rate.grad.abs().min() > 1e-4


def test_resets_need_the_density_matrix_method():
    """A statevector run of the damped circuit misses the engine; the density matrix hits it;
    Qiskit's StatevectorEstimator is refused in one line naming the backend to use."""
    _, prim = models(seed=3)
    tpl = sequence_template(prim, 3)
    compiled = resolve_backend("aer").transpile(tpl.circuit, cache=False)
    obs = compiled.map_observables(pauli_observables(4, prim.terms))
    values = np.random.default_rng(3).uniform(-1, 1, (3, tpl.circuit.num_parameters))
    exact_dm = expectation_values(aer_estimator(dynamic=True), compiled.circuit, obs, values)
    trajectory = expectation_values(aer_estimator(), compiled.circuit, obs, values)
    assert np.abs(trajectory - exact_dm).max() > 1e-3
    from qiskit.quantum_info import DensityMatrix

    for row, want in zip(values, exact_dm):  # Qiskit's own density matrix of the same circuit
        rho = DensityMatrix(compiled.circuit.assign_parameters(row))
        np.testing.assert_allclose([rho.expectation_value(o).real for o in obs], want, atol=1e-10)
    with pytest.raises(BackendError, match="cannot run mid-circuit resets.*--backend aer"):
        resolve_backend("statevector").estimator(dynamic=compiled.dynamic)


def test_fake_device_runs_a_damped_model_end_to_end():
    exact, prim = models(seed=4)
    _, compiled = attach_backend(prim, resolve_backend("fake_fez"), 3)
    ops = compiled.circuit.count_ops()
    assert ops["reset"] == 6 and compiled.noise_model is not None  # transpiling kept the resets
    assert compiled.circuit.num_qubits <= 6  # the active qubits only
    x = torch.randn(3, 3, 1, dtype=torch.float64)
    with torch.no_grad():
        got, want = prim(x), exact(x)
    assert got.shape == (3, DAMPED.num_classes) and torch.isfinite(got).all()
    diff = (got - want).abs().max().item()
    assert 1e-6 < diff < 0.1 * want.abs().max().item()  # the device's noise, small at T = 3
    prim.float()
    prim(x.float()).sum().backward()  # a noisy gradient step runs too
    assert torch.isfinite(prim.blocks[0].mixer.log_rate.grad).all()


@pytest.fixture(scope="module", params=[(), ("--encoding", "ry_rz", "--selective")],
                ids=["rz", "ry_rz-selective"])
def damped_aer_run(tmp_path_factory, request) -> Path:
    """``run --backend aer --memory damped``: a damped memory trained through the QNN (and one
    with RY·RZ inputs and per-token damping angles)."""
    out = tmp_path_factory.mktemp("runs") / "damped"
    mp = pytest.MonkeyPatch()
    mp.setenv("QLAM_CACHE_DIR", str(out.parent / "isa"))
    try:
        ok("run", "--backend", "aer", "--memory", "damped", "--layers", 1, "--heads", 1,
           "--pool", "last", *TINY, *request.param, "--out", out)
    finally:
        mp.undo()
    return out


def test_cli_trains_a_damped_memory_on_aer(damped_aer_run):
    result = json.loads((damped_aer_run / "result.json").read_text())
    cfg = result["model_config"]
    assert result["backend"] == "aer" and cfg["memory"] == "damped"
    assert cfg["selective"] == (cfg["encoding"] == "ry_rz")  # the two runs of the fixture
    assert result["data"]["seq_len"] == 4  # 196 pixels in patches of 49
    assert (cfg["layers"], cfg["heads"], cfg["pool"]) == (1, 1, "last")
    assert result["qnn_calls"]["backward"] == 2  # 16 samples / batch 8, one gradient PUB each
    assert 0 <= result["test_accuracy"] <= 1
    trained = torch.load(damped_aer_run / "checkpoint.pt", map_location="cpu",
                         weights_only=False)["model"]
    torch.manual_seed(0)  # the run's seed: its initial weights
    fresh = PrimitiveQLAM(ModelConfig(**cfg)).state_dict()
    assert trained["blocks.0.mixer.log_rate"].shape == (1, 2)
    assert not torch.equal(trained["blocks.0.mixer.log_rate"], fresh["blocks.0.mixer.log_rate"])


def test_eval_and_export_of_a_damped_checkpoint_reproduce_the_engine(damped_aer_run, tmp_path):
    from qiskit import qpy
    from qiskit.quantum_info import DensityMatrix, SparsePauliOp

    ok("eval", "--checkpoint", damped_aer_run, "--backend", "aer", "--out", tmp_path)
    rep = json.loads((tmp_path / "eval.json").read_text())
    assert rep["samples"] == 8 and rep["max_logit_diff"] < 1e-6
    assert rep["accuracy"] == rep["exact_accuracy"]
    res = invoke("eval", "--checkpoint", damped_aer_run, "--backend", "statevector")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "cannot run mid-circuit resets" in res.output and "--backend aer" in res.output
    ok("export", "--checkpoint", damped_aer_run, "--sample", 1, "--format", "qpy",
       "--out", tmp_path)
    with open(tmp_path / "sample1.qpy", "rb") as f:
        circuit = qpy.load(f)[0]
    steps = json.loads((damped_aer_run / "result.json").read_text())["data"]["seq_len"]
    assert circuit.num_qubits == 4 and circuit.num_parameters == 0
    assert circuit.count_ops()["reset"] == 2 * steps  # every ancilla reset after every token
    obs = json.loads((tmp_path / "sample1_observables.json").read_text())["observables"]
    values = json.loads((tmp_path / "sample1_values.json").read_text())
    assert values["engine"].startswith("density matrix")
    rho = DensityMatrix(circuit)
    got = [rho.expectation_value(SparsePauliOp(o["labels"], o["coeffs"])).real for o in obs]
    assert len(got) == len(values["expectation_values"]) > 0
    np.testing.assert_allclose(got, values["expectation_values"], atol=1e-9)


def test_coupling_layout_is_refused_for_damped_memories_in_one_line(tmp_path):
    """The coupling chain lays out n qubits; the damped circuit's 2n would fail in the
    transpiler with a traceback, so the run is refused before anything is written."""
    res = invoke("run", "--backend", "fake_fez", *TINY, "--memory", "damped", "--entangler", "cz",
                 "--entanglement", "coupling", "--out", tmp_path / "c")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --entanglement coupling lays out")
    assert not (tmp_path / "c").exists()
