"""Test helper: a Qiskit density matrix as the engine's Pauli vector (transfer.py's order)."""

from __future__ import annotations

import torch
from qiskit.quantum_info import DensityMatrix, Pauli


def pauli_vector(rho: DensityMatrix, n: int) -> torch.Tensor:
    """Tr(P ρ) for every Pauli string in transfer's order (index Σ p_q 4^q)."""
    labels = ["".join("IXYZ"[(i // 4**q) % 4] for q in reversed(range(n))) for i in range(4**n)]
    return torch.tensor([rho.expectation_value(Pauli(lab)).real for lab in labels])
