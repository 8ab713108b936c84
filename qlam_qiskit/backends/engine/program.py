"""A parameterized circuit compiled for the engine (segments of fixed, diagonal and input gates),
and the engine's dtype rules."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit

from ...errors import EngineError
from .compile import (Gate, Segment, compile_gates, diag_patterns, fixed_unitary_t, gate_angles,
                      hoist_phases, input_map, segment_gates)
from .gates import apply_matrix, gate_matrix
from .phases import phases

Tensor = torch.Tensor
DTYPES = {"complex64": torch.complex64, "complex128": torch.complex128}


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for complex64, float64 for complex128."""
    return torch.float64 if dtype == torch.complex128 else torch.float32


def as_complex_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Accept "complex64"/"complex128" or a torch dtype; refuse anything else."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise EngineError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise EngineError(f"dtype must be complex64 or complex128, got {dtype}")
    return dtype


class CircuitProgram:
    """A parameterized circuit compiled for the engine: applies to states of H weight sets."""

    def __init__(self, circuit: QuantumCircuit, inputs: Sequence[Parameter] = (),
                 weights: Sequence[Parameter] = ()) -> None:
        self.num_qubits = circuit.num_qubits
        self.num_inputs, self.num_weights = len(inputs), len(weights)
        gates, self.global_phase = hoist_phases(compile_gates(circuit, inputs, weights))
        """Constant global phase (circuit's and definitions'), folded into a segment by prepare."""
        self.segments: list[Segment] = segment_gates(gates)
        self.diag_tables = {i: self._tables(s) for i, s in enumerate(self.segments)
                          if s.kind == "diag"}

    def _tables(self, seg: Segment) -> tuple:
        """(pattern (G, D), qubits, local (G, 2)) of a diagonal run; the last two only when every
        gate is single-qubit, which lets the phases be built as a Kronecker product."""
        pat = torch.as_tensor(diag_patterns(seg.gates, self.num_qubits))
        if not all(len(g.qubits) == 1 for g in seg.gates):
            return pat, None, None
        local = torch.as_tensor(diag_patterns([replace(g, qubits=(0,)) for g in seg.gates], 1))
        return pat, tuple(g.qubits[0] for g in seg.gates), local

    @property
    def kinds(self) -> list[str]:
        """Segment kinds in order, e.g. ["diag", "fixed"] for the default QLAM cell."""
        return [s.kind for s in self.segments]

    def prepare(self, theta: Tensor | None, w: Tensor, dtype: torch.dtype) -> list:
        """Per-segment tensors for inputs θ (T, H, B, m) or None, and weights w (H, P).

        fixed -> Uᵀ (H, D, D); diag -> phases (T, H, B, D); gates -> [(gate, angles (T, H, B))].
        A global phase is folded into the first fixed block or the first phases.
        """
        out: list = []
        phase = self.global_phase
        for i, seg in enumerate(self.segments):
            if seg.kind == "fixed":
                out.append(fixed_unitary_t(seg.gates, w, self.num_qubits, dtype, phase))
                phase = 0.0
            elif seg.kind == "diag":
                ang = torch.stack([gate_angles(g, theta, w)[0] for g in seg.gates], -1)
                pat, qubits, local = self.diag_tables[i]
                d = phases(ang, pat.to(ang.device), qubits,
                           None if local is None else local.to(ang))  # (T, H, B, D)
                out.append(d * complex(np.cos(phase), np.sin(phase)) if phase else d)
                phase = 0.0
            else:
                gates = seg.gates
                if phase:  # no fixed or diagonal segment before: a phase gate joins this run
                    gates = (Gate("global_phase", (), np.zeros((1, self.num_inputs)),
                                  np.zeros((1, self.num_weights)), np.array([phase])),) + gates
                    phase = 0.0
                out.append([(g, gate_angles(g, theta, w)) for g in gates])
        return out

    def diag_fixed_parts(self, w: Tensor, dtype: torch.dtype
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For a (diag, fixed) cell: input map A (G, m), weight offsets o (H, G) with the diagonal
        angles = θ @ Aᵀ + o, pattern (G, D), and Uᵀ (H, D, D) with the global phase folded in:
        what the adjoint scan rebuilds each token's phases from."""
        diag, fixed = self.segments
        a_in, off = input_map(diag.gates, w)  # (G, m), (H, G)
        pattern = self.diag_tables[0][0].to(device=w.device, dtype=w.dtype)  # (G, D)
        return a_in, off, pattern, fixed_unitary_t(fixed.gates, w, self.num_qubits, dtype,
                                                   self.global_phase)

    def step(self, psi: Tensor, prepared: list, t: int = 0) -> Tensor:
        """Apply the program to states ψ (H, B, D) with token t of the prepared inputs."""
        h, b, d = psi.shape
        for seg, p in zip(self.segments, prepared):
            if seg.kind == "fixed":
                psi = torch.bmm(psi, p)  # (H, B, D) @ (H, D, D)
            elif seg.kind == "diag":
                psi = psi * p[t]  # (H, B, D)
            else:
                flat = psi.reshape(h * b, d)
                for g, ang in p:  # angles (T, H, B) per gate
                    mat = gate_matrix(g.name, tuple(a[t].reshape(h * b) for a in ang),
                                      dtype=psi.dtype, device=psi.device)
                    flat = apply_matrix(flat, mat, g.qubits, self.num_qubits)
                psi = flat.reshape(h, b, d)
        return psi


def unbind_time(prepared: list, kinds: list[str]) -> list:
    """Slice input tensors along time once (indexing per step makes backward O(T^2))."""
    out = []
    for kind, p in zip(kinds, prepared):
        if kind == "diag":
            p = p.unbind(0)
        elif kind == "gates":
            p = [(g, [a.unbind(0) for a in ang]) for g, ang in p]
        out.append(p)
    return out
