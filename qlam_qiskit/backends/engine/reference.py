"""Naive reference: every gate of every token applied one by one, in plain autograd.

No fusion, no phase tricks: the slow, obviously-correct path that the fast engine is tested and
benchmarked against (like mamba's ``selective_scan_ref``).
"""

from __future__ import annotations

import torch
from qiskit.circuit import QuantumCircuit

from ...circuits.cell import CellTemplate
from .gates import apply_matrix, gate_matrix
from .compile import compile_gates, gate_angles
from .program import as_complex_dtype, real_dtype

Tensor = torch.Tensor


def run_reference(cell: CellTemplate, theta: Tensor, w: Tensor, init: QuantumCircuit | None = None,
                  *, dtype: str | torch.dtype = "complex64") -> Tensor:
    """θ (T, H, B, m), w (H, P) -> states after each token (T, H, B, D), gate by gate (global
    phases included, as ``global_phase`` gates)."""
    cdt = as_complex_dtype(dtype)
    t, h, b, _ = theta.shape
    n = cell.circuit.num_qubits
    theta, w = theta.to(real_dtype(cdt)), w.to(real_dtype(cdt))
    gates = compile_gates(cell.circuit, list(cell.inputs), list(cell.weights))
    psi = torch.zeros(h * b, 2**n, dtype=cdt, device=theta.device)  # (H*B, D)
    psi[:, 0] = 1
    for g in compile_gates(init, (), ()) if init is not None else ():  # constant angles
        ang = tuple(torch.tensor(c, dtype=real_dtype(cdt), device=psi.device) for c in g.c)
        psi = apply_matrix(psi, gate_matrix(g.name, ang, dtype=cdt, device=psi.device), g.qubits, n)
    states = []
    for th in theta.unbind(0):  # (H, B, m)
        for g in gates:
            ang = tuple(a.expand(h, b).reshape(h * b) if a.dim() == 2 else
                        a[:, None].expand(h, b).reshape(h * b)
                        for a in gate_angles(g, th if g.uses_input else None, w))
            mat = gate_matrix(g.name, ang, dtype=cdt, device=psi.device)  # (H*B, k, k) or (k, k)
            psi = apply_matrix(psi, mat, g.qubits, n)
        states.append(psi.reshape(h, b, -1))
    return torch.stack(states)  # (T, H, B, D)
