"""The generated damped kernel (backends/engine/damped_fused.py) against the plain-autograd
reference: states and every gradient, in both precisions and both SIMD widths, with and without
RY inputs, per-token and broadcast rates, ragged batches; bit-identical across calls and thread
counts."""

from __future__ import annotations

import pytest
import torch

from qlam_qiskit.backends.engine import damped_fused
from qlam_qiskit.backends.engine.damped_fused import (damped_read, damped_read_lanes,
                                                      damped_read_lanes_ref, damped_read_ref,
                                                      damped_scan_lanes, damped_scan_lanes_ref)
from qlam_qiskit.backends.engine.transfer import plus_state
from kernelpaths import assert_relatively_close, assert_same_bits_across_threads

pytestmark = pytest.mark.skipif(not damped_fused.supports(1),
                                reason="numba is not importable: the layer runs the reference")
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True, params=["256", "512"], ids=["v256", "v512"])
def vector_bits(request, monkeypatch):
    """Every test at both SIMD widths: LLVM splits 512-bit vectors where the CPU lacks AVX-512,
    so both code shapes run on any machine."""
    monkeypatch.setenv("QLAM_VECTOR_BITS", request.param)
    assert damped_fused.vector_bits() == int(request.param)
    return int(request.param)


def _case(n: int, t: int, b: int, h: int, dtype: torch.dtype, ry: bool, per_token: bool = True):
    g = torch.Generator().manual_seed(100 * n + 10 * t + b)
    d = 4**n
    rz = torch.randn(h, n, t, b, generator=g, dtype=dtype).requires_grad_()
    shape = (h, n, t, b) if per_token else (h, n, 1, 1)
    rate = (0.3 * torch.rand(shape, generator=g, dtype=dtype)).requires_grad_()
    a = torch.randn(h, n, t, b, generator=g, dtype=dtype).requires_grad_() if ry else None
    q = torch.linalg.qr(torch.randn(h, d, d, generator=g, dtype=torch.float64))[0]
    m = q.to(dtype).requires_grad_()  # an orthogonal stand-in for a unitary's PTM
    w = torch.randn(h, d, t, b, generator=g, dtype=dtype)  # a readout's weights
    return plus_state(n, dtype), rz, rate, m, a, w


def _run(fn, r0, rz, rate, m, a, w):
    states = fn(r0, rz, rate, m, a)
    inputs = [rz, rate, m] + ([a] if a is not None else [])
    return [states.detach()] + list(torch.autograd.grad((states * w).sum(), inputs))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n, ry, t, b, per_token", [
    (1, False, 9, 32, True), (1, True, 7, 32, True), (2, True, 9, 32, True),
    (2, False, 12, 33, True),  # ragged: the last task padded
    (2, True, 40, 5, False),  # one rate per memory and qubit, broadcast over tokens
    (2, False, 4, 64, False)])
def test_kernel_matches_reference(n, ry, t, b, per_token, dtype):
    case = _case(n, t, b, 3, dtype, ry, per_token)
    got, want = _run(damped_scan_lanes, *case), _run(damped_scan_lanes_ref, *case)
    assert_relatively_close(("states", "g_rz", "g_rate", "g_m", "g_ry"), got, want, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n, ry, b, per_token", [(2, True, 32, True), (1, False, 37, True),
                                                 (2, False, 5, False)])
def test_readout_in_the_walk_matches_reference(n, ry, b, per_token, dtype):
    """y = bias + wᵀ r with dL/dr formed inside the backward walk: y and every gradient
    (angles, rates, R, w, bias) against the reference states read by the same map."""
    r0, rz, rate, m, a, _ = _case(n, 11, b, 3, dtype, ry, per_token)
    g = torch.Generator().manual_seed(7)
    w = torch.randn(3 * 4**n, 5, generator=g, dtype=dtype).requires_grad_()
    bias = torch.randn(5, generator=g, dtype=dtype).requires_grad_()
    wy = torch.randn(11, b, 5, generator=g, dtype=dtype)
    inputs = [rz, rate, m, w, bias] + ([a] if ry else [])
    runs = []
    for fn in (damped_read_lanes, damped_read_lanes_ref):
        y = fn(r0, rz, rate, m, a, w, bias)
        runs.append([y.detach()] + list(torch.autograd.grad((y * wy).sum(), inputs)))
    assert_relatively_close(("y", "g_rz", "g_rate", "g_m", "g_w", "g_bias", "g_ry"), *runs,
                            TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("ry, per_token, b", [(True, True, 32), (False, True, 40),
                                              (True, False, 32), (False, False, 3)])
def test_stacked_inputs_match_reference(ry, per_token, b, dtype):
    """``damped_read`` (what the layer calls): one stacked input z (δ, log-rates, RY angles, or
    broadcast rates), y and the gradients of z, R, w, bias against the reference."""
    r0, rz, rate, m, a, _ = _case(2, 9, b, 3, dtype, ry, per_token)
    rows = [rz] + ([rate.log()] if per_token else []) + ([a] if ry else [])
    z = torch.stack(rows).detach().requires_grad_()
    g = torch.Generator().manual_seed(3)
    w = torch.randn(48, 6, generator=g, dtype=dtype).requires_grad_()
    bias = torch.randn(6, generator=g, dtype=dtype).requires_grad_()
    rate_b = None if per_token else rate
    wy = torch.randn(9, b, 6, generator=g, dtype=dtype)
    inputs = [z, m, w, bias] + ([] if per_token else [rate_b])
    runs = []
    for fn in (damped_read, damped_read_ref):
        y = fn(r0, z, m, w, bias, ry=ry, rate=rate_b)
        runs.append([y.detach()] + list(torch.autograd.grad((y * wy).sum(), inputs)))
    assert_relatively_close(("y", "g_z", "g_m", "g_w", "g_bias", "g_rate"), *runs, TOL[dtype])


def test_states_are_one_matrix_for_the_readout():
    """(H, N, T, B) contiguous: the readout GEMM reads (H·N, T·B) with no copy."""
    r0, rz, rate, m, a, _ = _case(2, 6, 32, 2, torch.float32, True)
    out = damped_scan_lanes(r0, rz, rate, m, a)
    assert out.shape == (2, 16, 6, 32) and out.is_contiguous()


def test_bit_identical_across_calls_and_thread_counts():
    case = _case(2, 50, 64, 5, torch.float32, True)
    assert_same_bits_across_threads(lambda: _run(damped_scan_lanes, *case))


def test_wider_memories_are_refused_with_the_limit():
    assert not damped_fused.supports(damped_fused.MAX_QUBITS + 1)
    r0, rz, rate, m, _, _ = _case(1, 2, 32, 1, torch.float32, False)
    with pytest.raises(ValueError, match="1 to 2 qubits"):
        damped_scan_lanes(r0, rz.detach().expand(1, 3, 2, 32), rate, m)
