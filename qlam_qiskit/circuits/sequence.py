"""The coherent recurrence: the QLAM cell unrolled over T tokens into one Qiskit circuit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit

from .cell import CellTemplate, init_circuit


@dataclass(frozen=True)
class SequenceTemplate:
    """Init block, then T copies of the cell (or of the damped cell, on 2n qubits); inputs are
    per-token angles, weights are shared."""

    circuit: QuantumCircuit
    inputs: ParameterVector
    """T·m input angles, token-major: inputs[t·m + j] is angle j of token t."""
    weights: Sequence[Parameter]
    """The weights shared by every token: the cell's (then a damped memory's damping angles)."""
    steps: int
    cell: CellTemplate


def qlam_sequence(cell: CellTemplate, steps: int, *, init: bool = True,
                  input_name: str = "x") -> SequenceTemplate:
    """Unroll ``cell`` over ``steps`` tokens (after the |+>^n init block when ``init``)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n, m = cell.circuit.num_qubits, len(cell.inputs)
    x = ParameterVector(input_name, steps * m)
    qc = QuantumCircuit(n, name=f"qlam_T{steps}")
    if init:
        qc.compose(init_circuit(n), inplace=True)
    for t in range(steps):
        step = cell.circuit.assign_parameters(
            {cell.inputs[j]: x[t * m + j] for j in range(m)}, inplace=False)
        qc.compose(step, inplace=True)
    return SequenceTemplate(qc, x, cell.weights, steps, cell)


def sequence_parameter_values(template: SequenceTemplate, angles: np.ndarray,
                              weights: np.ndarray) -> np.ndarray:
    """Values for ``template.circuit.parameters`` (Qiskit's sorted order) from angles and weights.

    ``angles`` is (..., T, m) and ``weights`` (P,); returns (..., num_parameters) so the array can be
    broadcast in an Estimator PUB.
    """
    angles = np.asarray(angles, dtype=float)
    lead = angles.shape[:-2]
    flat = angles.reshape(lead + (-1,))  # (..., T*m) token-major, like template.inputs
    by_param = {p: flat[..., i] for i, p in enumerate(template.inputs)}
    by_param.update({p: np.broadcast_to(float(v), lead) for p, v in zip(template.weights, weights)})
    return np.stack([by_param[p] for p in template.circuit.parameters], axis=-1)
