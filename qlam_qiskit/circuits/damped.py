"""The damped QLAM cell: the cell circuit, then amplitude damping of every memory qubit.

A unitary memory never forgets: at T = 784 every token's trace stays in the state forever and the
mixing scrambles it. Damping relaxes each qubit towards |0⟩ at a learned rate per memory, so old
tokens fade as in an SSM's decay, and the mixing turns the relaxed |0⟩ back into coherences the
next inputs write into (a unital channel such as dephasing relaxes to I/D instead, where input
phases have nothing left to act on). On hardware the channel is the standard dilation onto one
ancilla per qubit, reset mid-circuit:

    q ──■──────X──        CRY(φ_q) from q to its ancilla a, CX from a back to q, reset a:
    a ──RY(φ)──■──|0⟩─    amplitude damping with γ_q = sin²(φ_q / 2).

The system qubits are 0..n-1 and the ancillas n..2n-1, so the memory keeps the cell's qubit order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from qiskit.circuit import ParameterVector, QuantumCircuit

from .cell import CellTemplate, init_circuit


@dataclass(frozen=True)
class DampedTemplate:
    """A cell template with damping after it: the token circuit on 2n qubits and its angles."""

    cell: CellTemplate
    circuit: QuantumCircuit
    """One token's update: the cell on qubits 0..n-1, then damping through ancillas n..2n-1."""
    damping: ParameterVector
    """φ_q per memory qubit, γ_q = sin²(φ_q / 2)."""

    @property
    def num_qubits(self) -> int:
        """Width n of the memory (ancillas not counted)."""
        return self.cell.num_qubits


def damped_cell(cell: CellTemplate, name: str = "φ") -> DampedTemplate:
    """The cell followed by amplitude damping of each qubit through a reset ancilla."""
    n = cell.num_qubits
    phi = ParameterVector(name, n)
    qc = QuantumCircuit(2 * n, name="qlam_damped_cell")
    qc.compose(cell.circuit, qubits=range(n), inplace=True)
    for q in range(n):
        qc.cry(phi[q], q, n + q)
        qc.cx(n + q, q)
        qc.reset(n + q)
    return DampedTemplate(cell, qc, phi)


def damped_sequence(template: DampedTemplate, steps: int, input_name: str = "x",
                    selective: bool = False) -> QuantumCircuit:
    """The damped cell unrolled over ``steps`` tokens after |+>^n, the ancillas reset and reused
    by every token: 2n qubits. Inputs are per token (``input_name``[t·m + j]); the cell's
    weights and the damping angles are shared, or with ``selective`` the damping angles are the
    token's too (``input_name``[t·(m + n) + m + q] after its m cell inputs). Runs on an Estimator
    that simulates mid-circuit resets exactly (Aer's density-matrix method) or on a device with
    dynamic circuits."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n, m = template.num_qubits, len(template.cell.inputs)
    per = m + n if selective else m  # inputs per token
    x = ParameterVector(input_name, steps * per)
    qc = QuantumCircuit(2 * n, name=f"qlam_damped_T{steps}")
    qc.compose(init_circuit(n), qubits=range(n), inplace=True)
    for t in range(steps):
        binds = {template.cell.inputs[j]: x[t * per + j] for j in range(m)}
        if selective:
            binds.update({template.damping[q]: x[t * per + m + q] for q in range(n)})
        qc.compose(template.circuit.assign_parameters(binds), inplace=True)
    return qc


def damping_angles(gamma: torch.Tensor) -> torch.Tensor:
    """φ = 2 asin √γ: what ``DampedTemplate.damping`` binds for damping probabilities γ."""
    return 2 * torch.asin(torch.sqrt(gamma))


def rate_angles(rate: torch.Tensor) -> torch.Tensor:
    """The same angles from damping rates ρ > 0 (γ = 1 - exp(-ρ)): φ = 2 atan √(exp(ρ) - 1),
    whose gradient 1/√(exp(ρ) - 1) stays finite where γ rounds to 1 (asin √γ's does not)."""
    return 2 * torch.atan(torch.sqrt(torch.expm1(rate)))
