"""Selective damping (each token sets its memories' damping rates): the per-token channel against
Qiskit's density matrices, the numba kernel against the plain reference, and the layer around it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import DensityMatrix, Kraus, Operator, random_unitary

from qlam_qiskit.backends.engine import selective, transfer
from qlam_qiskit.backends.engine.damped_fused import damped_read_ref
from qlam_qiskit.backends.engine.selective import (damping_pairs, ry_pairs, rz_damped_scan,
                                                   rz_damped_scan_ref)
from qlam_qiskit.backends.engine.transfer import (damping_transfer, pauli_matrices, plus_state,
                                                  rz_transfer_scan, unitary_transfer)
from qlam_qiskit.circuits.cell import CellConfig
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.models import damped as damped_module
from qlam_qiskit.models.damped import DampedQLAMLayer
from qlam_qiskit.models.primitive import hardware_problem
from kernelpaths import (assert_kernel_matches_reference, assert_relatively_close,
                         assert_same_bits_across_threads)
from paulis import pauli_vector

ATOL = 1e-12
needs_numba = pytest.mark.skipif(not transfer.available(),
                                 reason="numba is not importable: the kernel is the reference")


def test_damping_pairs_couple_z_with_i_of_the_same_string():
    for n in (1, 2, 3):
        zp = damping_pairs(n)
        assert zp.shape == (n, 4 ** (n - 1), 2)
        for q in range(n):
            assert (((zp[q, :, 0] // 4**q) % 4) == 3).all()
            assert (zp[q, :, 0] - zp[q, :, 1] == 3 * 4**q).all()


@pytest.mark.parametrize("n", [1, 2])
def test_per_token_rates_equal_qiskit_kraus_evolution(n):
    """Three tokens of RZ(δ_t) on every qubit, a fixed unitary, then amplitude damping with a
    different γ per token and qubit, as Qiskit evolves the density matrix."""
    g = torch.Generator().manual_seed(n)
    t_len = 3
    theta = torch.randn(t_len, 1, 1, n, dtype=torch.float64, generator=g)
    rate = 2 * torch.rand(t_len, 1, 1, n, dtype=torch.float64, generator=g)
    u = random_unitary(2**n, seed=5 + n)
    m = unitary_transfer(torch.tensor(u.data)[None], pauli_matrices(n))  # (1, N, N)
    got = rz_damped_scan_ref(plus_state(n), theta, rate, m)[:, 0, 0]  # (T, N)
    rho = DensityMatrix.from_label("+" * n)
    for t in range(t_len):
        for q in range(n):
            d = theta[t, 0, 0, q].item()
            rz = Operator(np.diag([np.exp(-0.5j * d), np.exp(0.5j * d)]))
            rho = rho.evolve(rz, qargs=[q])
        rho = rho.evolve(u)
        for q in range(n):
            gam = 1 - np.exp(-rate[t, 0, 0, q].item())
            k = Kraus([np.diag([1, np.sqrt(1 - gam)]), np.sqrt(gam) * np.array([[0, 1], [0, 0]])])
            rho = rho.evolve(k, qargs=[q])
        assert torch.allclose(got[t], pauli_vector(rho, n), atol=ATOL)


def _case(n: int, t: int, b: int, h: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(n * 100 + b)
    theta = torch.randn(t, b, h, n, dtype=dtype, generator=g, requires_grad=True)
    rate = (2 * torch.rand(t, b, h, n, dtype=dtype, generator=g)).requires_grad_()
    m = (0.3 * torch.randn(h, 4**n, 4**n, dtype=dtype, generator=g)).requires_grad_()
    w = torch.randn(t, b, h, 4**n, dtype=dtype, generator=g)
    return plus_state(n, dtype), theta, rate, m, w


def _scan_and_grads(fn, r0, theta, rate, m, w, ry=None):
    out = fn(r0, theta, rate, m, ry)
    wrt = (theta, rate, m) + ((ry,) if ry is not None else ())
    return (out.detach().clone(), *torch.autograd.grad((out * w).sum(), wrt))


def test_ry_pairs_share_the_x_rows_of_the_rz_pairs():
    """The kernel turns each qubit's (X, Y, Z) rows at once: RY's (Z, X) pairs and RZ's (X, Y)
    pairs must list the same strings in the same order."""
    for n in (1, 2, 3):
        rot, zx = transfer.rotation_pairs(n), ry_pairs(n)
        assert (zx[..., 1] == rot[..., 0]).all()
        assert (((zx[..., 0] // 4 ** np.arange(n)[:, None]) % 4) == 3).all()


@needs_numba
@pytest.mark.parametrize("n, b", [(1, 5), (2, 33), (2, 1), (3, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_ry", [False, True], ids=["rz", "ry_rz"])
def test_kernel_matches_reference_forward_and_backward(n, b, dtype, with_ry):
    """Values, g_θ, g_ρ, g_R (and g of the RY angles) of the numba scan against plain
    autograd, ragged batches."""
    case = _case(n, 9, b, 3, dtype)
    ry = torch.randn(case[1].shape, dtype=dtype, generator=torch.Generator().manual_seed(b),
                     requires_grad=True) if with_ry else None
    want = _scan_and_grads(rz_damped_scan_ref, *case, ry)
    got = _scan_and_grads(rz_damped_scan, *case, ry)
    assert_relatively_close(("states", "g_theta", "g_rate", "g_m", "g_ry"), got, want,
                            1e-10 if dtype == torch.float64 else 1e-5)


@needs_numba
def test_constant_rates_are_the_damped_scan():
    """ρ_t the same for every token and sample: the transfer scan with S = A(ρ) R."""
    r0, theta, _, m, _ = _case(2, 8, 4, 3, torch.float64)
    rate = torch.rand(3, 2, dtype=torch.float64)
    got = rz_damped_scan(r0, theta, rate.expand(8, 4, 3, 2), m)
    want = rz_transfer_scan(r0, theta, damping_transfer(rate) @ m)
    assert torch.allclose(got, want, atol=ATOL)


@needs_numba
def test_kernel_bit_identical_across_calls_and_thread_counts():
    case = _case(2, 40, 7, 5, torch.float32)
    assert_same_bits_across_threads(lambda: _scan_and_grads(rz_damped_scan, *case))


def layer(selective: bool = True, heads: int = 2, encoding: str = "rz",
          n: int = 2) -> DampedQLAMLayer:
    torch.manual_seed(0)
    return DampedQLAMLayer(3, 4, heads=heads, cell=CellConfig(qubits=n, encoding=encoding),
                           dtype="complex128", dt_min=0.3, dt_max=1.0, rate_min=0.05,
                           rate_max=0.5, selective=selective).double()


CHANNELS = pytest.mark.parametrize("encoding, selective", [("rz", True), ("ry_rz", False),
                                                           ("ry_rz", True)])


def test_selective_layer_starts_as_the_damped_one_and_then_differs():
    sel, plain = layer(True), layer(False)
    assert set(dict(sel.named_parameters())) - set(dict(plain.named_parameters())) == \
        {"select.weight", "select.bias"}
    plain.load_state_dict({k: v for k, v in sel.state_dict().items() if "select" not in k})
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    assert torch.allclose(sel(x), plain(x), atol=ATOL)
    with torch.no_grad():
        sel.select.weight.normal_()
    assert not torch.allclose(sel(x), plain(x), atol=1e-3)


@CHANNELS
def test_step_streams_the_same_outputs_as_forward(encoding, selective):
    lay = layer(selective, encoding=encoding)
    with torch.no_grad():
        for p in lay.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    full = lay(x)
    state, outs = lay.default_state(3), []
    for t in range(x.shape[1]):
        out, state = lay.step(x[:, t], state)
        outs.append(out)
    assert torch.allclose(torch.stack(outs, 1), full, atol=ATOL)


@needs_numba
@CHANNELS
@pytest.mark.parametrize("n, kernel, reference", [
    (2, "damped_read", damped_read_ref),  # the generated kernel (up to 2 qubits)
    (3, "rz_damped_scan", rz_damped_scan_ref)])  # selective.py's (wider memories)
def test_layer_kernel_and_reference_paths_agree(encoding, selective, n, kernel, reference,
                                                monkeypatch):
    lay = layer(selective, heads=3, encoding=encoding, n=n)
    with torch.no_grad():
        for p in lay.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    assert lay.generated(x) == (n <= 2)
    assert lay(x).stride(-1) == 1  # the residual stream adds to it: features T·B apart made
    g_fast = assert_kernel_matches_reference(  # every add a strided pass (leaves the reference in)
        lay, x, monkeypatch, damped_module, kernel, reference, ATOL, 1e-10)
    assert lay(x).stride(-1) == 1
    assert not selective or g_fast["select.weight"].abs().sum() > 0


def test_classifier_option_trains_select_and_runs_on_primitives_hardware_shape():
    cfg = ModelConfig(d_model=8, layers=1, heads=2, qubits=2, memory="damped", selective=True)
    model = QLAMClassifier(cfg)
    model(torch.randn(4, 10, 1)).sum().backward()
    assert model.blocks[0].mixer.select.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="add --memory damped"):
        QLAMClassifier(ModelConfig(selective=True))
    assert hardware_problem(ModelConfig(layers=1, heads=1, pool="last", qubits=2,
                                        memory="damped", selective=True)) is None


def test_strong_token_rates_keep_finite_gradients():
    r0, theta, rate, m, w = _case(2, 5, 3, 2, torch.float32)
    rate = (40 * torch.ones_like(rate)).requires_grad_()  # γ rounds to 1 in float32
    for fn in (rz_damped_scan, rz_damped_scan_ref):
        grads = torch.autograd.grad((fn(r0, theta, rate, m) * w).sum(), (theta, rate, m))
        assert all(torch.isfinite(g).all() for g in grads)


def test_reference_runs_without_the_kernel(monkeypatch):
    monkeypatch.setattr(selective, "njit", None)
    r0, theta, rate, m, _ = _case(1, 4, 2, 1, torch.float64)
    assert torch.equal(rz_damped_scan(r0, theta, rate, m), rz_damped_scan_ref(r0, theta, rate, m))
