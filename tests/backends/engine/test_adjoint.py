"""Unitary-adjoint backpropagation against plain autograd: values, gradients, drift, memory."""

from __future__ import annotations

import pytest
import torch

from qlam_qiskit.backends.engine.adjoint import adjoint_scan, adjoint_scan_ref
from qlam_qiskit.backends.engine import SequenceEngine
from qlam_qiskit.circuits.cell import CellConfig, init_circuit, qlam_cell

C128, C64 = torch.complex128, torch.complex64


def _problem(t: int, dtype: torch.dtype, device, seed: int = 0, h=2, b=3, n=3, m=2):
    """Random normalised ψ0, inputs θ with an input map A and offsets o, a ±1/2 phase pattern
    like RZ gates', a unitary M, and loss weights."""
    g = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype == C128 else torch.float32
    d = 2**n
    psi0 = torch.randn(h, b, d, generator=g, dtype=C128)
    psi0 = psi0 / psi0.norm(dim=-1, keepdim=True)
    theta = torch.randn(t, h, b, m, generator=g, dtype=torch.float64)
    a_in = torch.randn(n, m, generator=g, dtype=torch.float64)
    off = torch.randn(h, n, generator=g, dtype=torch.float64)
    bits = (torch.arange(d)[None, :] >> torch.arange(n)[:, None]) & 1  # (n, D)
    pattern = (bits.double() - 0.5)  # RZ(θ) on qubit q: ∓θ/2
    a = torch.randn(h, d, d, generator=g, dtype=C128)
    m = torch.linalg.matrix_exp(a - a.mH)
    w = torch.randn(h, b, d, generator=g, dtype=C128)  # loss weights
    cast = lambda x: x.to(device=device, dtype=dtype if x.is_complex() else real)  # noqa: E731
    return [cast(x) for x in (psi0, theta, a_in, off, pattern, m, w)]


def _grads(fn, psi0, theta, a_in, off, pattern, m, w, **kw):
    psi0, theta, off, m = (x.clone().requires_grad_(True) for x in (psi0, theta, off, m))
    out = fn(psi0, theta, a_in, off, pattern, m, **kw)
    loss = (out * w).real.sum()
    return (out.detach(), *torch.autograd.grad(loss, (psi0, theta, off, m)))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("anchor", [0, 16])
def test_adjoint_matches_autograd_complex128(anchor, device):
    p = _problem(64, C128, device)
    got = _grads(adjoint_scan, *p, anchor_every=anchor)
    ref = _grads(adjoint_scan_ref, *p)
    for a, b in zip(got, ref):
        assert (a - b).abs().max().item() < 1e-10


def test_adjoint_matches_autograd_complex64(device):
    """complex64: both are held to the complex128 truth; the adjoint path is no worse than
    plain autograd's own round-off (relative 1e-5 at T=64, 1e-4 when re-anchored at T=1024)."""
    truth = _grads(adjoint_scan_ref, *_problem(64, C128, "cpu"))
    p = _problem(64, C64, device)
    for got in (_grads(adjoint_scan, *p), _grads(adjoint_scan_ref, *p)):
        for a, b in zip(got, truth):
            assert _rel(a.cpu().to(b.dtype), b) < 1e-5


def test_drift_at_t1024_and_anchoring():
    """Round-off of the backward walk at T=1024 in complex64, with and without anchors."""
    truth = _grads(adjoint_scan_ref, *_problem(1024, C128, "cpu", seed=1))
    p = _problem(1024, C64, "cpu", seed=1)
    plain = max(_rel(a.to(b.dtype), b) for a, b in zip(_grads(adjoint_scan, *p)[1:], truth[1:]))
    anchored = max(_rel(a.to(b.dtype), b) for a, b in
                   zip(_grads(adjoint_scan, *p, anchor_every=64)[1:], truth[1:]))
    autograd = max(_rel(a.to(b.dtype), b) for a, b in
                   zip(_grads(adjoint_scan_ref, *p)[1:], truth[1:]))
    assert anchored <= plain * 1.01 and anchored < 1e-3 and plain < 1e-2
    assert anchored < 10 * autograd  # within an order of magnitude of plain autograd's round-off


@pytest.mark.parametrize("cfg", [CellConfig(qubits=3), CellConfig(qubits=4, entangler="cz"),
                                 CellConfig(qubits=2, entanglement="linear", encoding="rz_zz")])
def test_engine_adjoint_mode_equals_stored_states(cfg, device):
    tpl = qlam_cell(cfg)
    kw = {"dtype": "complex128"}
    plain = SequenceEngine(tpl, init_circuit(cfg.qubits), kernel="dense", **kw)
    engines = [plain, SequenceEngine(tpl, init_circuit(cfg.qubits), kernel="dense-adjoint",
                                     anchor_every=8, **kw)]
    if device.type == "cpu" and plain.product is not None:  # the fused kernel's own adjoint walk
        engines += [SequenceEngine(tpl, init_circuit(cfg.qubits), kernel="fused", anchor_every=k,
                                   **kw) for k in (0, 8)]
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(20, 2, 4, cfg.num_inputs, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(2, cfg.num_weights, generator=g, dtype=torch.float64).to(device)
    outs = []
    for eng in engines:
        th, ww = theta.clone().requires_grad_(True), w.clone().requires_grad_(True)
        psi = eng.run(th, ww, all_states=False)  # (H, B, D)
        loss = (psi.abs() ** 2 * torch.arange(psi.shape[-1], device=device)).sum() + psi.real.sum()
        outs.append((psi.detach(), *torch.autograd.grad(loss, (th, ww))))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert (a - b).abs().max().item() < 1e-10
