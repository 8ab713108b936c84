"""The damped memory: its Pauli-transfer engine against Qiskit's density matrices, its numba
kernel against the plain reference, and the model, streaming and command line around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from qiskit.quantum_info import (DensityMatrix, Operator, Statevector, partial_trace,
                                 random_density_matrix, random_unitary)

from qlam_qiskit.backends.engine import transfer
from qlam_qiskit.backends.engine.transfer import (damping_transfer, pauli_matrices, plus_state,
                                                  rz_transfer_scan, rz_transfer_scan_ref,
                                                  unitary_transfer)
from qlam_qiskit.backends.engine.damped_fused import damped_read_ref
from qlam_qiskit.circuits.cell import CellConfig
from qlam_qiskit.circuits.damped import damping_angles
from qlam_qiskit.cli.main import main
from qlam_qiskit.errors import EngineError
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.models import damped as damped_module
from qlam_qiskit.models.damped import DampedQLAMLayer
from kernelpaths import (assert_kernel_matches_reference, assert_relatively_close,
                         assert_same_bits_across_threads)
from paulis import pauli_vector

ATOL = 1e-12  # complex128 / float64 throughout these checks


@pytest.mark.parametrize("n", [1, 2, 3])
def test_transfer_matrices_match_qiskit(n):
    paulis = pauli_matrices(n)
    rho = random_density_matrix(2**n, seed=n)
    u = random_unitary(2**n, seed=10 + n)
    r = unitary_transfer(torch.tensor(u.data)[None], paulis)[0] @ pauli_vector(rho, n)
    assert torch.allclose(r, pauli_vector(rho.evolve(u), n), atol=ATOL)
    # damping of every qubit as Kraus operators K0 = diag(1, √(1-γ)), K1 = √γ |0><1|
    gamma = torch.rand(1, n, dtype=torch.float64)
    out = rho
    for q, g in enumerate(gamma[0].tolist()):
        from qiskit.quantum_info import Kraus
        k = Kraus([np.diag([1, np.sqrt(1 - g)]), np.sqrt(g) * np.array([[0, 1], [0, 0]])])
        out = out.evolve(k, qargs=[q])
    r = damping_transfer(-torch.log1p(-gamma))[0] @ pauli_vector(rho, n)
    assert torch.allclose(r, pauli_vector(out, n), atol=ATOL)
    assert torch.allclose(plus_state(n), pauli_vector(DensityMatrix.from_label("+" * n), n), atol=ATOL)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_transfer_and_observables_equal_their_references_with_gradients(n):
    """The GEMM form of the PTM (``unitary_transfer``) and the product-form readout observables
    against the einsum and D × D forms: values and gradients."""
    u = torch.linalg.qr(torch.randn(4, 2**n, 2**n, dtype=torch.complex128))[0].requires_grad_()
    wr = torch.randn(4, 4**n, 4**n, dtype=torch.float64)
    runs = []
    for fn in (transfer.unitary_transfer, transfer.unitary_transfer_ref):
        r = fn(u, pauli_matrices(n))
        runs.append([r.detach(), *torch.autograd.grad((r * wr).sum(), u)])
    assert_relatively_close(("R", "g_u"), *runs, ATOL)
    layer = DampedQLAMLayer(3, 4, heads=3, cell=CellConfig(qubits=n), queries=2,
                            correlators="all", dtype="complex128")
    wo = torch.randn(layer.observables().shape, dtype=torch.float64)
    runs = []
    for fn in (layer.observables, layer.observables_ref):
        o = fn()
        runs.append([o.detach(), *torch.autograd.grad((o * wo).sum(), layer.basis)])
    assert_relatively_close(("observables", "g_basis"), *runs, ATOL)


def _scan_case(n: int, t: int, b: int, h: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(n * 100 + b)
    theta = torch.randn(t, b, h, n, dtype=dtype, generator=g, requires_grad=True)
    s = (0.3 * torch.randn(h, 4**n, 4**n, dtype=dtype, generator=g)).requires_grad_()
    w = torch.randn(t, b, h, 4**n, dtype=dtype, generator=g)
    return plus_state(n, dtype), theta, s, w


def _scan_and_grads(fn, r0, theta, s, w):
    out = fn(r0, theta, s)
    return (out.detach().clone(), *torch.autograd.grad((out * w).sum(), (theta, s)))


@pytest.mark.parametrize("n, b", [(1, 5), (2, 33), (2, 1), (3, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_kernel_matches_reference_forward_and_backward(n, b, dtype):
    """Values, g_θ and g_S of the numba scan against plain autograd, at ragged batch sizes."""
    if not transfer.available():
        pytest.skip("numba is not importable: rz_transfer_scan is the reference here")
    case = _scan_case(n, 9, b, 3, dtype)
    want = _scan_and_grads(rz_transfer_scan_ref, *case)
    got = _scan_and_grads(rz_transfer_scan, *case)
    assert_relatively_close(("states", "g_theta", "g_s"), got, want,
                            1e-10 if dtype == torch.float64 else 1e-5)


def test_kernel_bit_identical_across_calls_and_thread_counts():
    if not transfer.available():
        pytest.skip("numba is not importable: rz_transfer_scan is the reference here")
    case = _scan_case(2, 40, 7, 5, torch.float32)
    assert_same_bits_across_threads(lambda: _scan_and_grads(rz_transfer_scan, *case))


def test_kernel_states_are_one_matrix_for_the_readout():
    """The kernel's (T, B, H, N) output is a view of (H, N, T, B): the damped layer's readout
    GEMM reads it as (H·N, T·B) with no copy (and the reference path still works)."""
    if not transfer.available():
        pytest.skip("numba is not importable: rz_transfer_scan is the reference here")
    r0, theta, s, _ = _scan_case(2, 6, 4, 3, torch.float64)
    out = rz_transfer_scan(r0, theta, s)
    assert out.shape == (6, 4, 3, 16) and out.permute(2, 3, 0, 1).is_contiguous()
    assert rz_transfer_scan_ref(r0, theta, s).is_contiguous()


def layer(n: int = 2, heads: int = 2, gate: bool = False, encoding: str = "rz",
          selective: bool = False) -> DampedQLAMLayer:
    torch.manual_seed(0)  # fast steps and damping so five tokens move the state visibly
    return DampedQLAMLayer(3, 4, heads=heads, cell=CellConfig(qubits=n, encoding=encoding),
                           dtype="complex128", dt_min=0.3, dt_max=1.0, rate_min=0.05,
                           rate_max=0.5, gate=gate, selective=selective).double()


@pytest.mark.parametrize("n, encoding", [(1, "rz"), (2, "rz"), (1, "ry_rz"), (2, "ry_rz")])
def test_layer_equals_the_reset_circuit_in_qiskit(n, encoding):
    """Token by token: the damped cell circuit (cell, CRY, CX, reset ancilla) on Qiskit's
    DensityMatrix, system qubits kept, read by the learned bases, equals the engine (RZ inputs
    on transfer.py's scan, RY·RZ inputs on selective.py's)."""
    lay, (b, t) = layer(n, encoding=encoding), (2, 4)
    x = torch.randn(b, t, 3, dtype=torch.float64)
    r = lay.states(x)  # (T, B, H, N)
    if encoding == "rz":
        assert torch.allclose(r, rz_transfer_scan(lay.r0, lay.phases(x.transpose(0, 1))[1],
                                                  lay.transfer()), atol=ATOL)
    y = lay.read(r).transpose(0, 1)  # (B, T, H·K·M)
    w, bias = lay.readout_map()
    assert torch.allclose((r.flatten(-2) @ w + bias).transpose(0, 1), lay(x), atol=ATOL)
    tpl, ro = lay.template, lay.readout_template
    theta, w = lay.input_angles(x).detach(), lay.mixing().detach()
    phi = damping_angles(lay.damping()).detach()
    km = ro.num_outputs
    for h in range(lay.heads):
        bind_ro = dict(zip(ro.weights, lay.basis[h].tolist()))
        obs = [Operator(qc.assign_parameters(bind_ro, strict=False)) for qc in ro.circuits]
        for i in range(b):
            rho = DensityMatrix(Statevector.from_label("+" * n))
            for j in range(t):
                binds = {**dict(zip(tpl.cell.inputs, theta[i, j, h].tolist())),
                         **dict(zip(tpl.cell.weights, w[h].tolist())),
                         **dict(zip(tpl.damping, phi[h].tolist()))}
                full = DensityMatrix.from_label("0" * n).tensor(rho).evolve(
                    tpl.circuit.assign_parameters(binds))
                rho = DensityMatrix(partial_trace(full, list(range(n, 2 * n))))
                want = [rho.expectation_value(u.adjoint() @ Operator.from_label(
                    "".join("Z" if q in s else "I" for q in reversed(range(n)))) @ u).real
                    for u in obs for s in ro.terms]
                got = y[i, j, h * km:(h + 1) * km]
                assert torch.allclose(got, torch.tensor(want, dtype=got.dtype), atol=ATOL)


def test_damping_forgets_and_unitary_limit_keeps():
    """With γ → 0 the memory stays pure (Tr ρ² = 1); with damping and no input it relaxes to the
    mixing's fixed point, the same from any starting state."""
    lay = layer(2, heads=1)
    with torch.no_grad():
        lay.log_rate.fill_(-40.0)  # γ ≈ 4e-18
        r = rz_transfer_scan(lay.r0, torch.randn(50, 1, 1, 2, dtype=torch.float64), lay.transfer())
        assert torch.allclose((r ** 2).sum(-1) / 4, torch.ones(50, 1, 1, dtype=torch.float64))
        lay.log_rate.fill_(0.0)  # γ = 1 - 1/e per token
        zero = torch.zeros(200, 1, 1, 2, dtype=torch.float64)
        starts = torch.stack([lay.r0, pauli_vector(DensityMatrix.from_label("11"), 2)])
        ends = [rz_transfer_scan_ref(s, zero, lay.transfer())[-1, 0, 0] for s in starts]
        assert torch.allclose(ends[0], ends[1], atol=1e-10)
        assert not torch.allclose(ends[0], lay.r0, atol=1e-3)


@pytest.mark.parametrize("gate", [False, True], ids=["ungated", "gated"])
def test_step_streams_the_same_outputs_as_forward(gate):
    lay = layer(2, gate=gate)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    full = lay(x)
    state, outs = lay.default_state(3), []
    for t in range(x.shape[1]):
        out, state = lay.step(x[:, t], state)
        outs.append(out)
    assert torch.allclose(torch.stack(outs, 1), full, atol=ATOL)


@pytest.mark.parametrize("gate", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("n, kernel, reference", [
    (2, "damped_read", damped_read_ref),  # the generated kernel (up to 2 qubits)
    (3, "rz_transfer_scan", rz_transfer_scan_ref)])  # transfer.py's (wider memories)
def test_layer_kernel_and_reference_paths_agree(gate, n, kernel, reference, monkeypatch):
    """forward() on the kernel's layout (readout GEMM on (H·N, T·B)) against forward() on the
    reference's (T, B, H, N): outputs and every parameter's gradient."""
    if not transfer.available():
        pytest.skip("numba is not importable: both paths are the reference here")
    lay = layer(n, heads=3, gate=gate)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    assert lay.generated(x) == (n <= 2)
    assert_kernel_matches_reference(lay, x, monkeypatch, damped_module, kernel, reference, ATOL,
                                    1e-10)


def test_classifier_trains_its_damping_and_refuses_bad_cells():
    cfg = ModelConfig(d_model=8, layers=1, heads=2, qubits=2, memory="damped", dtype="complex128")
    model = QLAMClassifier(cfg).double()
    model(torch.randn(4, 10, 1, dtype=torch.float64)).sum().backward()
    lay = model.blocks[0].mixer
    assert isinstance(lay, DampedQLAMLayer)
    for p in (lay.log_rate, lay.log_dt, lay.mix, lay.basis, lay.proj.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(EngineError, match="memory='damped' needs"):
        QLAMClassifier(ModelConfig(qubits=2, memory="damped", entangler="cx"))
    with pytest.raises(ValueError, match="memory must be one of"):
        QLAMClassifier(ModelConfig(memory="mixed"))


def test_cli_trains_a_damped_run_and_keeps_primitives_to_the_hardware_shape(tmp_path: Path):
    tiny = ["--limit-train", "32", "--limit-test", "16", "--batch-size", "16", "--layers", "1",
            "--heads", "2", "--qubits", "2", "--d-model", "8", "--quiet", "--epochs", "1",
            "--memory", "damped"]
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", *tiny, "--out", str(out)])
    assert res.exit_code == 0, res.output
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["model_config"]["memory"] == "damped"
    assert 0 <= json.loads((out / "result.json").read_text())["test_accuracy"] <= 1
    res = CliRunner().invoke(main, ["run", *tiny, "--backend", "aer", "--out",
                                    str(tmp_path / "prim")])
    assert res.exit_code == 1 and "Traceback" not in res.output  # damped runs there, 2 heads not
    assert res.output.strip().startswith("Error: --heads 2: primitives backends train the "
                                         "hardware-compatible QLAM")
    assert not (tmp_path / "prim").exists()


@pytest.mark.parametrize("encoding", ["rz", "ry_rz"])
def test_unrolled_damped_circuit_on_aer_density_matrix_estimator_equals_the_engine(encoding):
    """The primitives side: the damped cell unrolled over T tokens (ancillas reset and reused),
    transpiled for Aer and run through its EstimatorV2 with the density-matrix method, gives the
    engine's readouts at the last token."""
    pytest.importorskip("qiskit_aer")
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import EstimatorV2

    from qlam_qiskit.circuits.damped import damped_sequence

    n, t = 2, 4
    lay = layer(n, heads=1, encoding=encoding)
    x = torch.randn(1, t, 3, dtype=torch.float64)
    r = lay.states(x)  # (T, 1, 1, N)
    want = lay.read(r)[-1, 0]  # (K·M,) readouts after the last token
    tpl, ro = lay.template, lay.readout_template
    qc = damped_sequence(tpl, t)
    theta = lay.input_angles(x).detach()[0, :, 0]  # (T, m)
    xs = [p for p in qc.parameters if p.name.startswith("x[")]
    binds = {**{p: theta.flatten()[p.index].item() for p in xs},
             **dict(zip(tpl.cell.weights, lay.mixing()[0].tolist())),
             **dict(zip(tpl.damping, damping_angles(lay.damping())[0].tolist()))}
    bound = transpile(qc.assign_parameters(binds), AerSimulator(method="density_matrix"))
    obs = []
    for rc in ro.circuits:
        u = Operator(rc.assign_parameters(dict(zip(ro.weights, lay.basis[0].tolist())),
                                          strict=False))
        for s in ro.terms:
            z = Operator.from_label("".join("Z" if q in s else "I" for q in reversed(range(n))))
            o = SparsePauliOp.from_operator(u.adjoint() @ z @ u)
            obs.append(SparsePauliOp("I" * n).tensor(o))  # ancillas n..2n-1: the high qubits
    est = EstimatorV2(options={"backend_options": {"method": "density_matrix"}})
    evs = est.run([(bound, obs)]).result()[0].data.evs
    assert np.allclose(evs, want.detach().numpy(), atol=1e-8)


def test_primitives_models_take_hardware_shaped_damped_memories():
    from qlam_qiskit.models.primitive import PrimitiveQLAM, hardware_problem
    cfg = ModelConfig(layers=1, heads=1, pool="last", qubits=2, memory="damped")
    assert hardware_problem(cfg) is None
    assert isinstance(PrimitiveQLAM(cfg).blocks[0].mixer, DampedQLAMLayer)
    assert hardware_problem(ModelConfig(layers=1, heads=1, pool="last")) is None
    msg = hardware_problem(ModelConfig(layers=2, heads=1, pool="last", qubits=2, memory="damped"))
    assert "layers=2" in msg and "--layers 1 --heads 1 --pool last" in msg
    msg = hardware_problem(ModelConfig(layers=1, heads=4, pool="mean", qubits=2, memory="damped"))
    assert "heads=4" in msg and "pool=mean" in msg
    with pytest.raises(ValueError, match="not hardware-compatible"):
        PrimitiveQLAM(ModelConfig(layers=2, heads=1, pool="last", qubits=2, memory="damped"))
    assert "no quantum circuit" in hardware_problem(cfg, "lstm")


def test_strong_damping_keeps_finite_gradients():
    """γ -> 1 in float32 (rate 40: 1 - exp(-40) rounds to 1) must not give NaN gradients: the
    bench's T = 49 cell trained at scaled-up rates went NaN when √(1-γ) was taken of γ."""
    lay = DampedQLAMLayer(3, 4, heads=2, cell=CellConfig(qubits=2), rate_min=1.0, rate_max=40.0)
    lay(torch.randn(2, 5, 3)).sum().backward()
    for p in lay.parameters():
        assert torch.isfinite(p.grad).all()
