"""The fused product-form kernel against its plain-autograd reference, and the product form itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit

from qlam_qiskit.backends.engine import kernels
from qlam_qiskit.errors import EngineError
from qlam_qiskit.backends.engine.product import product_form, product_scan_ref
from qlam_qiskit.backends.engine.reference import run_reference
from qlam_qiskit.backends.engine import (CircuitProgram, ReadoutEngine, SequenceEngine)
from qlam_qiskit.circuits.cell import CellConfig, CellTemplate, init_circuit, qlam_cell
from qlam_qiskit.circuits.readout import qlam_readout

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs numba")


def _program(cfg: CellConfig) -> CircuitProgram:
    tpl = qlam_cell(cfg)
    return CircuitProgram(tpl.circuit, list(tpl.inputs), list(tpl.weights))


@pytest.mark.parametrize("cfg, layers", [
    (CellConfig(qubits=3), 1),
    (CellConfig(qubits=4, depth=2, entangler="rzz"), 2),
    (CellConfig(qubits=5, entanglement="full"), 1),
])
def test_product_form_of_cells_with_one_qubit_and_diagonal_gates(cfg, layers):
    form = product_form(_program(cfg))
    assert form is not None and form.depth == layers


@pytest.mark.parametrize("cfg", [CellConfig(qubits=3, entangler="cx"),
                                 CellConfig(qubits=3, encoding="rz_zz"),
                                 CellConfig(qubits=3, encoding="ry_rz")])
def test_no_product_form_and_fused_kernel_refused(cfg):
    assert product_form(_program(cfg)) is None
    with pytest.raises(EngineError, match="product form"):
        SequenceEngine(qlam_cell(cfg), kernel="fused")
    assert SequenceEngine(qlam_cell(cfg)).kernel_for(torch.device("cpu")) in ("dense", "steps")


def test_unknown_kernel_refused():
    with pytest.raises(EngineError, match="kernel must be one of"):
        SequenceEngine(qlam_cell(CellConfig(qubits=2)), kernel="fast")


def _case(cfg: CellConfig, t: int, h: int, b: int, dtype: torch.dtype, seed: int = 0):
    """Arguments of ``product_scan`` for a cell: ψ0 (random, normalized), θ, A, o, qubits, phases,
    U, e; the differentiable ones (ψ0, θ, o, U, e) require grad."""
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    g = torch.Generator().manual_seed(seed)
    form = product_form(_program(cfg))
    theta = torch.rand(t, h, b, cfg.num_inputs, generator=g, dtype=torch.float64) * 6.3
    w = torch.randn(h, cfg.num_weights, generator=g, dtype=torch.float64)
    a_in, off, qubits, local = form.inputs(w)
    u, e = form.unitaries(w, torch.complex128)
    psi0 = torch.randn(h, b, 2**cfg.qubits, generator=g, dtype=torch.complex128)
    psi0 = psi0 / psi0.norm(dim=-1, keepdim=True)
    args = [psi0, theta, a_in, off, qubits, local, u, e]
    args = [x if x.dtype == torch.int64 else x.to(dtype if x.is_complex() else real) for x in args]
    for i in DIFF:
        args[i].requires_grad_()
    return args


DIFF = (0, 1, 3, 6, 7)  # ψ0, θ, o, U, e
NAMES = ("states", "dψ0", "dθ", "do", "dU", "de")


def _value_and_grads(fn, args, all_states, **kw):
    out = fn(*args, all_states=all_states, **kw)
    g = torch.Generator().manual_seed(7)
    wr = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.real.dtype)
    loss = (out.real * wr).sum() + (out.abs() ** 2 * wr).sum()
    return [out.detach()] + list(torch.autograd.grad(loss, [args[i] for i in DIFF]))


@pytest.mark.parametrize("all_states", [True, False], ids=["all", "last"])
@pytest.mark.parametrize("dtype, tol", [(torch.complex128, 1e-10), (torch.complex64, 1e-5)],
                         ids=["c128", "c64"])
@pytest.mark.parametrize("cfg", [CellConfig(qubits=3), CellConfig(qubits=4, depth=2, entangler="rzz"),
                                 CellConfig(qubits=6, entanglement="full")])
def test_fused_kernel_matches_reference_values_and_gradients(cfg, dtype, tol, all_states):
    args = _case(cfg, 9, 2, 5, dtype)  # 5 samples per head: lanes do not divide the batch evenly
    got = _value_and_grads(kernels.product_scan, args, all_states)
    ref_args = [a.detach() if a.dtype == torch.int64 else
                a.detach().to(torch.complex128 if a.is_complex() else torch.float64)
                for a in args]
    for i in DIFF:
        ref_args[i].requires_grad_()
    want = _value_and_grads(product_scan_ref, ref_args, all_states)
    for name, a, b in zip(NAMES, got, want):
        scale = max(1.0, b.abs().max().item())
        err = (a.to(b.dtype) - b).abs().max().item()
        assert err < tol * scale, f"{name}: {err:.2e}"


def test_anchors_restart_the_walk_and_keep_gradients():
    cfg = CellConfig(qubits=4)
    args = _case(cfg, 40, 1, 3, torch.complex128)
    plain = _value_and_grads(kernels.product_scan, args, False)
    anchored = _value_and_grads(kernels.product_scan, args, False, anchor_every=8)
    for a, b in zip(plain, anchored):
        assert (a - b).abs().max().item() < 1e-10


def _saved_bytes(fn) -> int:
    """Bytes autograd saves for backward while fn() builds its graph."""
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)


def test_last_state_mode_saves_no_per_token_states():
    """Memory independent of T: beyond the inputs θ themselves, nothing saved grows with T."""
    cfg = CellConfig(qubits=6)
    sizes = {}
    for t in (16, 64):
        args = _case(cfg, t, 1, 4, torch.complex64)
        sizes[t] = _saved_bytes(lambda: kernels.product_scan(*args, all_states=False))
        sizes[t] -= args[1].numel() * args[1].element_size()
    assert sizes[16] == sizes[64]
    args = _case(cfg, 64, 1, 4, torch.complex64)
    states = _saved_bytes(lambda: kernels.product_scan(*args, all_states=True))
    assert states >= 64 * 4 * 2**6 * 8  # the all-states mode does keep every state


def test_wide_memory_14_qubits_matches_gate_by_gate_reference():
    cfg = CellConfig(qubits=14)
    tpl, init = qlam_cell(cfg), init_circuit(14)
    g = torch.Generator().manual_seed(1)
    theta = torch.rand(3, 1, 2, 14, generator=g, dtype=torch.float64) * 6.3
    w = torch.randn(1, cfg.num_weights, generator=g, dtype=torch.float64)
    eng = SequenceEngine(tpl, init, dtype="complex128")
    assert eng.kernel_for(torch.device("cpu")) == "fused"
    got = eng.run(theta, w)
    want = run_reference(tpl, theta, w, init, dtype="complex128")
    assert (got - want).abs().max().item() < 1e-10
    ro = ReadoutEngine(qlam_readout(14, 2, pairs=cfg.entangling_pairs), dtype="complex128")
    assert ro.gatewise
    r = torch.randn(1, 6 * 14, generator=g, dtype=torch.float64, requires_grad=True)
    ev = ro(got[-1], r)  # (H, B, K, M)
    assert ev.shape == (1, 2, 2, 28) and ev.abs().max() <= 1 + 1e-9
    ev.sum().backward()
    assert torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_gatewise_readout_equals_dense_readout():
    tpl = qlam_readout(4, 3, pairs=((0, 1), (1, 2)))
    g = torch.Generator().manual_seed(2)
    states = torch.randn(5, 2, 3, 16, generator=g, dtype=torch.complex128)
    states = states / states.norm(dim=-1, keepdim=True)
    r = torch.randn(2, len(tpl.weights), generator=g, dtype=torch.float64)
    dense = ReadoutEngine(tpl, dtype="complex128", gatewise=False)
    gatewise = ReadoutEngine(tpl, dtype="complex128", gatewise=True)
    for st in (states, states[0]):
        assert (dense(st, r) - gatewise(st, r)).abs().max().item() < 1e-12


def test_product_form_handles_any_one_qubit_and_diagonal_gates():
    """A hand-written cell (U, SX, P and CP gates, a global phase, two layers) keeps its product
    form, and the fused and product kernels match the dense one (itself held to Qiskit)."""
    th, w = ParameterVector("x", 3), ParameterVector("w", 4)
    qc = QuantumCircuit(3, global_phase=0.3)
    qc.rz(th[0], 0)
    qc.p(2 * th[1] + 0.1, 1)
    qc.rz(th[2] - w[0], 2)
    qc.u(w[1], w[2], 0.4, 0)
    qc.sx(1)
    qc.cp(w[3], 0, 2)
    qc.cz(1, 2)
    qc.ry(w[0], 1)  # after a diagonal touched qubit 1: opens a second layer
    qc.rz(0.5, 2)
    cfg = CellConfig(qubits=3)
    tpl = CellTemplate(cfg, qc, th, w)
    prog = CircuitProgram(qc, list(th), list(w))
    assert product_form(prog).depth == 2
    g = torch.Generator().manual_seed(4)
    theta = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    wt = torch.randn(2, 4, generator=g, dtype=torch.float64)
    want = SequenceEngine(tpl, None, dtype="complex128", kernel="dense").run(theta, wt)
    for kernel in ("fused", "product"):
        got = SequenceEngine(tpl, None, dtype="complex128", kernel=kernel).run(theta, wt)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12)


def _rel_errors(got, truth) -> list[float]:
    return [((a.to(b.dtype) - b).abs().max() / b.abs().max()).item() for a, b in zip(got, truth)]


def test_drift_at_t1024_complex64_is_no_worse_than_autograd():
    """Round-off of the fused adjoint walk over 1024 tokens in complex64, held to the complex128
    truth: within an order of magnitude of plain autograd's own complex64 error, and re-anchoring
    every 64 tokens does not make it worse."""
    cfg = CellConfig(qubits=4)
    exact = _case(cfg, 1024, 1, 3, torch.complex128, seed=5)
    truth = _value_and_grads(product_scan_ref, exact, False)
    low = _case(cfg, 1024, 1, 3, torch.complex64, seed=5)
    fused = max(_rel_errors(_value_and_grads(kernels.product_scan, low, False), truth))
    anchored = max(_rel_errors(_value_and_grads(kernels.product_scan, low, False,
                                                anchor_every=64), truth))
    autograd = max(_rel_errors(_value_and_grads(product_scan_ref, low, False), truth))
    assert fused < 1e-3 and anchored < 1e-3
    assert fused < 10 * autograd and anchored < 10 * autograd
