"""Compile a parameterized Qiskit circuit into segments the torch engine can run.

Every gate angle must be affine in the circuit's parameters: angle = a·θ + b·w + c, with θ the
per-token input angles and w the shared weights. Gates are grouped into maximal runs of
*fixed* gates (no input dependence: fused into one unitary per forward pass) and *input* gates
(applied per token; a run made only of diagonal gates becomes one elementwise phase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit

from .gates import GATES, SUPPORTED_GATES, apply_matrix, gate_matrix

Tensor = torch.Tensor
_IGNORED = {"barrier", "delay"}


class EngineError(ValueError):
    """A circuit the torch engine cannot run, with the reason and what to change."""


@dataclass(frozen=True)
class Gate:
    """One gate with its angles as affine maps: angles = A_in @ θ + A_w @ w + c."""

    name: str
    qubits: tuple[int, ...]
    a_in: np.ndarray  # (num_angles, m)
    a_w: np.ndarray  # (num_angles, P)
    c: np.ndarray  # (num_angles,)

    @property
    def uses_input(self) -> bool:
        return bool(np.any(self.a_in != 0))


@dataclass(frozen=True)
class Segment:
    """A maximal run of gates that are all fixed (``kind='fixed'``) or all input-dependent."""

    kind: str  # "fixed" | "diag" | "gates"
    gates: tuple[Gate, ...]


def _affine(expr, index: dict[Parameter, tuple[int, int]], m: int, p: int, where: str):
    """Split an angle into (coefficients on inputs (m,), on weights (P,), constant)."""
    a_in, a_w = np.zeros(m), np.zeros(p)
    if not isinstance(expr, ParameterExpression) or not expr.parameters:
        return a_in, a_w, float(expr)
    for par in expr.parameters:
        if par not in index:
            raise EngineError(f"{where}: parameter {par} is neither an input nor a weight; "
                              "bind it before compiling")
        grad = expr.gradient(par)
        if isinstance(grad, ParameterExpression) and grad.parameters:
            raise EngineError(f"{where}: angle {expr} is not affine in {par}; "
                              "the engine supports angles of the form a·θ + b·w + c")
        kind, i = index[par]
        (a_in if kind == "in" else a_w)[i] += float(grad)
    return a_in, a_w, float(expr.bind({par: 0.0 for par in expr.parameters}))


def compile_gates(circuit: QuantumCircuit, inputs: Sequence[Parameter],
                  weights: Sequence[Parameter]) -> list[Gate]:
    """Turn ``circuit`` into a list of affine-parameterized gates, refusing what cannot run."""
    index = {par: ("in", i) for i, par in enumerate(inputs)}
    index.update({par: ("w", i) for i, par in enumerate(weights)})
    m, p = len(inputs), len(weights)
    gates = []
    for pos, ins in enumerate(circuit.data):
        op = ins.operation
        if op.name in _IGNORED:
            continue
        if op.name not in GATES:
            raise EngineError(f"gate {op.name!r} (instruction {pos}) is not supported by the "
                              f"statevector engine; supported: {', '.join(SUPPORTED_GATES)} "
                              "(transpile with basis_gates from that list)")
        qubits = tuple(circuit.find_bit(q).index for q in ins.qubits)
        rows = [_affine(a, index, m, p, f"{op.name} at instruction {pos}") for a in op.params]
        a_in = np.array([r[0] for r in rows]).reshape(len(rows), m)
        a_w = np.array([r[1] for r in rows]).reshape(len(rows), p)
        c = np.array([r[2] for r in rows], dtype=float)
        gates.append(Gate(op.name, qubits, a_in, a_w, c))
    if isinstance(circuit.global_phase, ParameterExpression) and circuit.global_phase.parameters:
        raise EngineError("a parameterized global phase is not supported; bind it first")
    return gates


def segment_gates(gates: Sequence[Gate]) -> list[Segment]:
    """Group gates into maximal fixed / input-dependent runs; diagonal input runs become 'diag'."""
    segments: list[Segment] = []
    run: list[Gate] = []
    for g in list(gates) + [None]:
        if run and (g is None or g.uses_input != run[0].uses_input):
            if not run[0].uses_input:
                kind = "fixed"
            else:
                kind = "diag" if all(GATES[x.name][3] for x in run) else "gates"
            segments.append(Segment(kind, tuple(run)))
            run = []
        if g is not None:
            run.append(g)
    return segments


def gate_angles(gate: Gate, theta: Tensor | None, w: Tensor) -> tuple[Tensor, ...]:
    """Angles of ``gate`` for weights w (H, P) and inputs θ (..., H, B, m) or None.

    Returns one tensor per gate angle, shaped (H,) without inputs or (..., H, B) with them.
    """
    a_w = torch.as_tensor(gate.a_w, dtype=w.dtype, device=w.device)  # (A, P)
    c = torch.as_tensor(gate.c, dtype=w.dtype, device=w.device)  # (A,)
    ang = w @ a_w.T + c  # (H, A)
    if theta is not None:
        a_in = torch.as_tensor(gate.a_in, dtype=theta.dtype, device=theta.device)  # (A, m)
        ang = ang[:, None, :] + theta @ a_in.T  # (..., H, B, A)
    return tuple(ang.unbind(-1))


def input_map(gates: Sequence[Gate], w: Tensor) -> tuple[Tensor, Tensor]:
    """For one-angle input gates: A (G, m) and weight offsets o (H, G), so their angles are
    θ @ Aᵀ + o for inputs θ (..., m) and weights w (H, P)."""
    if any(len(g.a_in) != 1 for g in gates):
        raise EngineError("every diagonal input gate must take exactly one angle")
    a_in = torch.as_tensor(np.stack([g.a_in[0] for g in gates]), dtype=w.dtype, device=w.device)
    off = torch.stack([gate_angles(g, None, w)[0] for g in gates], -1)  # (H, G)
    return a_in, off


def fixed_unitary_t(gates: Sequence[Gate], w: Tensor, n: int, dtype: torch.dtype,
                    global_phase: float = 0.0) -> Tensor:
    """Transposed unitary Uᵀ (H, D, D) of a run of fixed gates, for weights w (H, P).

    Built by pushing the identity through the gates: row i ends as U e_i, so the result is Uᵀ,
    which is what row-vector states need (ψ ← ψ Uᵀ).
    """
    h, d = w.shape[0], 2**n
    eye = torch.eye(d, dtype=dtype, device=w.device)
    psi = eye.expand(h, d, d).reshape(h * d, d)  # (H*D, D)
    for g in gates:
        ang = gate_angles(g, None, w)  # each (H,)
        mat = gate_matrix(g.name, ang, dtype=dtype, device=w.device)
        if mat.dim() == 3:  # per head: (H, k, k) -> (H*D, k, k)
            mat = mat.repeat_interleave(d, dim=0)
        psi = apply_matrix(psi, mat, g.qubits, n)
    if global_phase:
        psi = psi * complex(np.cos(global_phase), np.sin(global_phase))
    return psi.reshape(h, d, d)


def diag_patterns(gates: Sequence[Gate], n: int) -> np.ndarray:
    """For a run of 1-angle diagonal gates: (G, D) with phase_i = Σ_g angle_g · pattern[g, i]."""
    d = 2**n
    idx = np.arange(d)
    rows = []
    for g in gates:
        k, n_ang, _, _ = GATES[g.name]
        if n_ang != 1:
            raise EngineError(f"diagonal input gate {g.name!r} must take exactly one angle")
        # phase of the gate's diagonal per local basis index, linear in its angle
        probe = gate_matrix(g.name, (torch.tensor(1.0, dtype=torch.float64),),
                            dtype=torch.complex128).diagonal().numpy()
        zero = gate_matrix(g.name, (torch.tensor(0.0, dtype=torch.float64),),
                           dtype=torch.complex128).diagonal().numpy()
        if not np.allclose(zero, 1.0):
            raise EngineError(f"diagonal input gate {g.name!r} is not identity at angle 0")
        local = np.angle(probe)  # (2**k,) phase per unit angle
        bits = [(idx >> q) & 1 for q in g.qubits]  # qargs[0] is the least significant
        loc = sum(b << j for j, b in enumerate(bits))
        rows.append(local[loc])
    return np.array(rows).reshape(len(rows), d)
