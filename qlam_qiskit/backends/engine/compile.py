"""Compile a parameterized Qiskit circuit into segments the torch engine can run.

Any Qiskit standard gate runs (``gates.py``); other gates, sub-circuits and boxes are inlined
from their definitions, and global phases (the circuit's, its definitions') become
``global_phase`` gates. Every gate angle must be affine in the circuit's parameters:
angle = a·θ + b·w + c, with θ the per-token input angles and w the shared weights. Gates are
grouped into maximal runs of *fixed* gates (no input dependence: fused into one unitary per
forward pass) and *input* gates (applied per token; a run made only of diagonal gates becomes
one elementwise phase).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from qiskit.circuit import Gate as QiskitGate
from qiskit.circuit import Instruction
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit

from ...errors import EngineError
from .gates import GATES, STANDARD, apply_matrix, gate_matrix

Tensor = torch.Tensor
_IGNORED = {"barrier", "delay"}


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
            raise EngineError(f"{where}: angle {expr} is not affine in {par}; the engine "
                              "supports angles of the form a·θ + b·w + c: compute nonlinear "
                              "maps classically and feed their results in as inputs")
        kind, i = index[par]
        (a_in if kind == "in" else a_w)[i] += float(grad)
    return a_in, a_w, float(expr.bind({par: 0.0 for par in expr.parameters}))


_DECOMPOSE = ("decompose it first: circuit.decompose() or "
              "transpile(circuit, basis_gates=['rz', 'sx', 'x', 'cx'])")


def compile_gates(circuit: QuantumCircuit, inputs: Sequence[Parameter],
                  weights: Sequence[Parameter]) -> list[Gate]:
    """Turn ``circuit`` into affine-parameterized standard gates, its global phase included (as
    ``global_phase`` gates), refusing what cannot run.

    A non-standard gate or instruction with a definition (a sub-circuit turned into a gate, a
    library block) or a ``box`` is replaced by its body, recursively; anything else (measure,
    reset, a gate without definition, a non-affine angle) raises a one-line ``EngineError``.
    """
    index = {par: ("in", i) for i, par in enumerate(inputs)}
    index.update({par: ("w", i) for i, par in enumerate(weights)})
    gates: list[Gate] = []
    _compile(circuit, tuple(range(circuit.num_qubits)), index, (len(inputs), len(weights)),
             "", gates)
    return gates


def _compile(circuit: QuantumCircuit, wires: tuple[int, ...], index: dict, sizes: tuple[int, int],
             where: str, out: list[Gate]) -> None:
    """Append the gates of ``circuit``, its qubit i mapped to ``wires[i]``, to ``out``."""
    phase = circuit.global_phase
    if isinstance(phase, ParameterExpression) or phase:
        out.append(_gate("global_phase", (), [phase], index, sizes,
                         f"global phase of {where.removesuffix(' > ') or 'the circuit'}"))
    for pos, ins in enumerate(circuit.data):
        op, at = ins.operation, f"{where}instruction {pos}"
        qubits = tuple(wires[circuit.find_bit(q).index] for q in ins.qubits)
        if op.name in _IGNORED:
            continue
        if op.name in GATES and op.base_class is STANDARD[op.name].base_class:
            out.append(_gate(op.name, qubits, op.params, index, sizes, f"{op.name} at {at}"))
        elif op.name == "box":  # a boxed sub-circuit: its body, on the box's qubits
            _compile(op.blocks[0], qubits, index, sizes, f"{at} (box) > ", out)
        elif (body := _definition(op)) is not None:  # a custom gate or sub-circuit
            _compile(body, qubits, index, sizes, f"{at} ({op.name}) > ", out)
        elif isinstance(op, QiskitGate):
            raise EngineError(f"gate {op.name!r} at {at} is not a Qiskit standard gate and has "
                              f"no definition; {_DECOMPOSE}")
        else:
            raise EngineError(f"instruction {op.name!r} at {at} is not a unitary gate; the engine "
                              "simulates unitary circuits only: remove it (readouts are computed "
                              "from the state) or, for a custom instruction, " + _DECOMPOSE)


def _definition(op: Instruction) -> QuantumCircuit | None:
    """An instruction's definition circuit, or None when it has none (or cannot build one)."""
    try:
        return op.definition
    except Exception:  # noqa: BLE001 - e.g. a synthesis that fails: reported as no definition
        return None


def _gate(name: str, qubits: tuple[int, ...], params, index: dict, sizes: tuple[int, int],
          where: str) -> Gate:
    """One standard gate with its angles split into affine maps of inputs and weights."""
    m, p = sizes
    rows = [_affine(a, index, m, p, where) for a in params]
    a_in = np.array([r[0] for r in rows]).reshape(len(rows), m)
    a_w = np.array([r[1] for r in rows]).reshape(len(rows), p)
    return Gate(name, qubits, a_in, a_w, np.array([r[2] for r in rows], dtype=float))


def hoist_phases(gates: Sequence[Gate]) -> tuple[list[Gate], float]:
    """Sum the constant ``global_phase`` gates into one number, and move the parameterized ones
    next to the first gate of their kind (input or fixed) so they split no segment: a global
    phase commutes with every gate. Returns (the other gates, the constant phase)."""
    is_phase = [g.name == "global_phase" for g in gates]
    consts = [g for g, ph in zip(gates, is_phase) if ph and not g.uses_input and not g.a_w.any()]
    const = sum(float(g.c[0]) for g in consts)
    rest = [g for g, ph in zip(gates, is_phase) if not ph]
    for g, ph in zip(gates, is_phase):
        if ph and (g.uses_input or g.a_w.any()):
            at = next((i for i, h in enumerate(rest) if h.uses_input == g.uses_input), len(rest))
            rest.insert(at, g)
    if consts and not rest:  # nothing to fold the phase into: keep it as a gate
        return [replace(consts[0], c=np.array([const]))], 0.0
    return rest, const


def segment_gates(gates: Sequence[Gate]) -> list[Segment]:
    """Group gates into maximal fixed / input-dependent runs; diagonal input runs become 'diag'."""
    segments: list[Segment] = []
    run: list[Gate] = []
    for g in list(gates) + [None]:
        if run and (g is None or g.uses_input != run[0].uses_input):
            if not run[0].uses_input:
                kind = "fixed"
            else:
                kind = "diag" if all(GATES[x.name].diagonal for x in run) else "gates"
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
        if GATES[g.name].num_angles != 1:
            raise EngineError(f"diagonal input gate {g.name!r} must take exactly one angle")
        # phase of the gate's diagonal per local basis index, linear in its angle
        probe = {a: gate_matrix(g.name, (torch.tensor(a, dtype=torch.float64),),
                                dtype=torch.complex128).diagonal().numpy() for a in (0.0, 1.0, 0.5)}
        local = np.angle(probe[1.0])  # (2**k,) phase per unit angle
        if not np.allclose(probe[0.0], 1.0) or not np.allclose(probe[0.5], np.exp(0.5j * local)):
            raise EngineError(f"diagonal input gate {g.name!r} is not exp(i·angle·pattern)")
        loc = np.zeros(d, dtype=int)  # local index per basis state; qargs[0] least significant
        for j, q in enumerate(g.qubits):
            loc += ((idx >> q) & 1) << j
        rows.append(local[loc])
    return np.array(rows).reshape(len(rows), d)
