"""Gate matrices and apply_matrix against Qiskit's own operators (little-endian, global phase exact)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from qiskit.circuit import Gate
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.quantum_info import Operator, Statevector, random_statevector, random_unitary

from qlam_qiskit.backends.engine.gates import GATES, SUPPORTED_GATES, apply_matrix, gate_matrix

QISKIT = get_standard_gate_name_mapping()


def qiskit_gate(name: str, angles: list[float]):
    """The Qiskit gate ``name`` with ``angles`` bound."""
    gate = QISKIT[name]
    return gate.base_class(*angles) if angles else gate


def test_every_qiskit_standard_gate_is_supported():
    gates = {name for name, op in QISKIT.items() if isinstance(op, Gate)}
    assert set(SUPPORTED_GATES) == gates and len(gates) >= 51
    assert SUPPORTED_GATES == tuple(sorted(GATES))
    for name, (k, n_ang, _, _) in GATES.items():
        assert name in QISKIT, name
        assert QISKIT[name].num_qubits == k, name
        assert len(QISKIT[name].params) == n_ang, name


@pytest.mark.parametrize("name", SUPPORTED_GATES)
def test_gate_matrix_matches_qiskit(name, rng):
    k, n_ang, _, _ = GATES[name]
    for _ in range(3):
        angles = list(rng.uniform(-2 * np.pi, 2 * np.pi, n_ang))
        want = Operator(qiskit_gate(name, angles)).data
        got = gate_matrix(name, tuple(torch.tensor(a, dtype=torch.float64) for a in angles),
                          dtype=torch.complex128)
        assert got.shape == (2**k, 2**k) and got.dtype == torch.complex128
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in SUPPORTED_GATES if GATES[n][1] > 0])
def test_gate_matrix_batched_angles(name, rng):
    """Angle tensors of shape S give S + (2^k, 2^k), each slice the gate at those angles."""
    k, n_ang, _, _ = GATES[name]
    angles = rng.uniform(-np.pi, np.pi, (n_ang, 2, 3))
    got = gate_matrix(name, tuple(torch.tensor(a) for a in angles), dtype=torch.complex128)
    assert got.shape == (2, 3, 2**k, 2**k)
    for i, j in itertools.product(range(2), range(3)):
        want = Operator(qiskit_gate(name, list(angles[:, i, j]))).data
        np.testing.assert_allclose(got[i, j].numpy(), want, rtol=0, atol=1e-12)
    low = gate_matrix(name, tuple(torch.tensor(a, dtype=torch.float32) for a in angles),
                      dtype=torch.complex64)
    assert low.dtype == torch.complex64
    np.testing.assert_allclose(low.numpy(), got.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", SUPPORTED_GATES)
def test_diagonal_flag(name, rng):
    k, n_ang, _, diagonal = GATES[name]
    angles = list(rng.uniform(0.3, 2.5, n_ang))  # away from angles where a gate degenerates
    mat = Operator(qiskit_gate(name, angles)).data
    off = mat - np.diag(np.diag(mat))
    assert diagonal == bool(np.allclose(off, 0, atol=1e-14)), name


PARAMETERIZED = [n for n in SUPPORTED_GATES if GATES[n].num_angles > 0]


@pytest.mark.parametrize("name", PARAMETERIZED)
def test_gate_matrix_derivatives_match_qiskit_finite_differences(name, rng):
    """d(matrix)/d(angle_j) by autograd equals the central difference of Qiskit's to_matrix()."""
    n_ang = GATES[name].num_angles
    angles = rng.uniform(-np.pi, np.pi, n_ang)
    x = torch.tensor(angles, requires_grad=True)

    def f(x):  # (A,) -> (2^k, 2^k, 2) real view
        return torch.view_as_real(gate_matrix(name, tuple(x.unbind()), dtype=torch.complex128))

    jac = torch.autograd.functional.jacobian(f, x)  # (2^k, 2^k, 2, A)
    eps = 1e-6
    for j in range(n_ang):
        step = np.eye(n_ang)[j] * eps
        fd = (Operator(qiskit_gate(name, list(angles + step))).data
              - Operator(qiskit_gate(name, list(angles - step))).data) / (2 * eps)
        got = jac[..., 0, j].numpy() + 1j * jac[..., 1, j].numpy()
        assert np.abs(got).max() > 0 or np.abs(fd).max() < 1e-8, name  # a real derivative
        np.testing.assert_allclose(got, fd, rtol=0, atol=1e-8, err_msg=f"{name} angle {j}")


@pytest.mark.parametrize("name", ["cu", "xx_plus_yy", "xx_minus_yy", "rzx", "r", "global_phase"])
def test_gate_matrix_gradcheck(name, rng):
    angles = tuple(torch.tensor(rng.uniform(-3, 3, 2), requires_grad=True)
                   for _ in range(GATES[name].num_angles))  # batched: S = (2,)
    assert torch.autograd.gradcheck(
        lambda *a: gate_matrix(name, a, dtype=torch.complex128), angles, eps=1e-6, atol=1e-7)


def _qubit_tuples(n: int):
    yield from ((q,) for q in range(n))
    yield from itertools.permutations(range(n), 2)  # includes reversed and non-adjacent pairs


@pytest.mark.parametrize("n", [3, 4])
def test_apply_matrix_matches_statevector_evolve(n, rng):
    seed = int(rng.integers(2**31))
    states = [random_statevector(2**n, seed=seed + i) for i in range(3)]
    psi = torch.tensor(np.stack([s.data for s in states]))  # (N, D)
    for qubits in _qubit_tuples(n):
        u = random_unitary(2 ** len(qubits), seed=seed + 7 * sum(qubits) + len(qubits))
        got = apply_matrix(psi, torch.tensor(u.data), qubits, n)
        for i, s in enumerate(states):
            want = s.evolve(u, qargs=list(qubits)).data
            np.testing.assert_allclose(got[i].numpy(), want, rtol=0, atol=1e-12,
                                       err_msg=f"qubits {qubits}")


@pytest.mark.parametrize("n", [3, 4])
def test_apply_matrix_one_matrix_per_state(n, rng):
    seed = int(rng.integers(2**31))
    states = [random_statevector(2**n, seed=seed + i) for i in range(3)]
    psi = torch.tensor(np.stack([s.data for s in states]))
    for qubits in [(0,), (n - 1,), (0, n - 1), (n - 1, 0), (2, 1)]:
        us = [random_unitary(2 ** len(qubits), seed=seed + 11 * i + len(qubits)) for i in range(3)]
        got = apply_matrix(psi, torch.tensor(np.stack([u.data for u in us])), qubits, n)
        for i, (s, u) in enumerate(zip(states, us)):
            np.testing.assert_allclose(got[i].numpy(), s.evolve(u, qargs=list(qubits)).data,
                                       rtol=0, atol=1e-12, err_msg=f"qubits {qubits}")


def test_apply_matrix_gate_on_reversed_pair_is_qiskit_cx():
    """cx with control 2, target 0 on |100> (qubit 2 set) gives |101>: bit order is Qiskit's."""
    n = 3
    psi = torch.zeros(1, 8, dtype=torch.complex128)
    psi[0, 0b100] = 1
    out = apply_matrix(psi, gate_matrix("cx", (), dtype=torch.complex128), (2, 0), n)
    assert out[0, 0b101] == 1 and out.abs().sum() == 1
    want = Statevector.from_label("100").evolve(Operator(QISKIT["cx"]), qargs=[2, 0]).data
    np.testing.assert_allclose(out[0].numpy(), want, atol=1e-15)
