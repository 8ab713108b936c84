"""Query-dependent readout: K learned measurement bases, each followed by Z-type measurements.

Query k rotates every qubit by a trainable U(α, β, γ) and then reads ⟨Z_q⟩ and the correlators
⟨Z_a Z_b⟩. One query is one measurement setting on hardware (all its observables commute), and the
rotated observables U_k† Z U_k are ordinary ``SparsePauliOp`` so any Estimator can evaluate them on
the unrotated memory state.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.circuit.library import UGate
from qiskit.quantum_info import Operator, SparsePauliOp

CORRELATORS = ("none", "pairs", "all")


@dataclass(frozen=True)
class ReadoutTemplate:
    """K basis-rotation circuits sharing one parameter vector, and the Z-type terms they measure."""

    circuits: tuple[QuantumCircuit, ...]
    weights: ParameterVector
    terms: tuple[tuple[int, ...], ...]
    """Qubit sets measured after each rotation: (q,) for ⟨Z_q⟩, (a, b) for ⟨Z_a Z_b⟩."""

    @property
    def num_queries(self) -> int:
        """K, the number of learned measurement bases."""
        return len(self.circuits)

    @property
    def num_outputs(self) -> int:
        """Expectation values produced per memory state: K × len(terms)."""
        return len(self.circuits) * len(self.terms)


def readout_terms(n: int, correlators: str = "pairs",
                  pairs: tuple[tuple[int, int], ...] = ()) -> tuple[tuple[int, ...], ...]:
    """Z_q for every qubit, plus Z_a Z_b for the entangling ``pairs`` or for all pairs."""
    if correlators not in CORRELATORS:
        raise ValueError(f"correlators must be one of {CORRELATORS}, got {correlators!r}")
    singles = tuple((q,) for q in range(n))
    if correlators == "none":
        return singles
    chosen = pairs if correlators == "pairs" else tuple(combinations(range(n), 2))
    return singles + tuple(dict.fromkeys(tuple(sorted(p)) for p in chosen))


def qlam_readout(n: int, queries: int = 2, *, correlators: str = "pairs",
                 pairs: tuple[tuple[int, int], ...] = (), name: str = "r") -> ReadoutTemplate:
    """K query circuits, each a U gate per qubit with 3 trainable angles (3·n·K weights)."""
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    r = ParameterVector(name, 3 * n * queries)
    circuits = []
    for k in range(queries):
        qc = QuantumCircuit(n, name=f"qlam_query_{k}")
        for q in range(n):
            i = 3 * (k * n + q)
            qc.u(r[i], r[i + 1], r[i + 2], q)
        circuits.append(qc)
    return ReadoutTemplate(tuple(circuits), r, readout_terms(n, correlators, pairs))


def _rotated_z(angles: np.ndarray, q: int, n: int) -> SparsePauliOp:
    """U† Z U on qubit q of n for U = U(θ, φ, λ): a real combination of X, Y, Z."""
    u = Operator(UGate(*map(float, angles)))
    z = Operator(np.diag([1.0, -1.0]))
    op = SparsePauliOp.from_operator(u.adjoint() @ z @ u).simplify()
    return op.apply_layout([q], num_qubits=n)


def query_observables(template: ReadoutTemplate, values: np.ndarray) -> list[SparsePauliOp]:
    """Observables for bound readout weights, ordered query-major: [k0 terms..., k1 terms..., ...].

    Measuring these on the memory state equals rotating by query k and measuring its Z terms.
    """
    values = np.asarray(values, dtype=float).reshape(template.num_queries, -1, 3)  # (K, n, 3)
    n = values.shape[1]
    out = []
    for k in range(template.num_queries):
        rotated = [_rotated_z(values[k, q], q, n) for q in range(n)]
        for term in template.terms:
            op = rotated[term[0]]
            for q in term[1:]:
                op = op.dot(rotated[q])
            out.append(op.simplify())
    return out


def z_observables(n: int, terms: tuple[tuple[int, ...], ...]) -> list[SparsePauliOp]:
    """The unrotated Z-type observables of ``terms`` (what is measured after a query rotation)."""
    return [SparsePauliOp.from_sparse_list([("Z" * len(t), list(t), 1.0)], num_qubits=n)
            for t in terms]
