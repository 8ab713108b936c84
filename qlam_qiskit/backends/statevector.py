"""Exact, batched, differentiable statevector engine for QLAM templates (torch, CPU or CUDA).

Built from the Qiskit cell template: fixed gate runs are fused into one 2^n×2^n unitary per forward
pass, diagonal input runs become one phase per basis state computed for all tokens at once, and the
time loop is then one elementwise product and one batched matmul per token. ``H`` independent
memories (heads) run side by side as a batch of unitaries.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit

from ..circuits.cell import CellTemplate
from ..circuits.readout import ReadoutTemplate
from .gates import apply_matrix, gate_matrix
from .program import (EngineError, Segment, compile_gates, diag_patterns, fixed_unitary_t,
                      gate_angles, segment_gates)

Tensor = torch.Tensor
DTYPES = {"complex64": torch.complex64, "complex128": torch.complex128}


def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


class CircuitProgram:
    """A parameterized circuit compiled for the engine: state in, state out, for H weight sets."""

    def __init__(self, circuit: QuantumCircuit, inputs: Sequence[Parameter] = (),
                 weights: Sequence[Parameter] = ()) -> None:
        self.num_qubits = circuit.num_qubits
        self.num_inputs, self.num_weights = len(inputs), len(weights)
        self.global_phase = float(circuit.global_phase)
        self.segments: list[Segment] = segment_gates(compile_gates(circuit, inputs, weights))
        self._patterns = {i: torch.as_tensor(diag_patterns(s.gates, self.num_qubits))
                          for i, s in enumerate(self.segments) if s.kind == "diag"}

    @property
    def dim(self) -> int:
        return 2**self.num_qubits

    def prepare(self, theta: Tensor | None, w: Tensor, dtype: torch.dtype) -> list:
        """Per-segment tensors for inputs θ (H, B, T, m) and weights w (H, P).

        fixed -> Uᵀ (H, D, D); diag -> phases (H, B, T, D); gates -> list of (gate, angles).
        """
        out: list = []
        for i, seg in enumerate(self.segments):
            if seg.kind == "fixed":
                phase = self.global_phase if i == 0 else 0.0
                out.append(fixed_unitary_t(seg.gates, w, self.num_qubits, dtype, phase))
            elif seg.kind == "diag":
                ang = torch.stack([torch.stack(gate_angles(g, theta, w), -1)[..., 0]
                                   for g in seg.gates], -1)  # (H, B, T, G)
                pat = self._patterns[i].to(device=w.device, dtype=ang.dtype)  # (G, D)
                out.append(torch.polar(torch.ones((), dtype=ang.dtype, device=w.device),
                                       ang @ pat))  # (H, B, T, D)
            else:
                out.append([(g, gate_angles(g, theta, w)) for g in seg.gates])  # (H, B, T) each
        if self.global_phase and (not self.segments or self.segments[0].kind != "fixed"):
            out.append(complex(np.cos(self.global_phase), np.sin(self.global_phase)))
        return out

    def slice(self, prepared: list, steps: int) -> list:
        """Unbind prepared input tensors along time once: a list over tokens of step inputs.

        Slicing with ``unbind()`` up front matters: indexing ``x[:, :, t]`` inside the loop makes
        the backward pass quadratic in T.
        """
        cols = []
        for seg, p in zip(self.segments, prepared):
            if seg.kind == "fixed":
                cols.append(None)
            elif seg.kind == "diag":
                cols.append(p.unbind(2))  # T x (H, B, D)
            else:
                cols.append([(g, [x.unbind(2) for x in ang]) for g, ang in p])
        out = []
        for k in range(steps):
            step = []
            for seg, p, c in zip(self.segments, prepared, cols):
                if seg.kind == "fixed":
                    step.append(p)
                elif seg.kind == "diag":
                    step.append(c[k])
                else:
                    step.append([(g, tuple(x[k] for x in ang)) for g, ang in c])
            step.extend(prepared[len(self.segments):])
            out.append(step)
        return out

    def step(self, psi: Tensor, step: list) -> Tensor:
        """Apply the program once to states ψ (H, B, D) with one token's sliced inputs."""
        h, b, d = psi.shape
        for seg, p in zip(self.segments, step):
            if seg.kind == "fixed":
                psi = torch.bmm(psi, p)  # (H, B, D) @ (H, D, D)
            elif seg.kind == "diag":
                psi = psi * p  # (H, B, D)
            else:
                flat = psi.reshape(h * b, d)
                for g, ang in p:  # angles (H, B) per gate
                    mat = gate_matrix(g.name, tuple(a.reshape(h * b) for a in ang),
                                      dtype=psi.dtype, device=psi.device)
                    flat = apply_matrix(flat, mat, g.qubits, self.num_qubits)
                psi = flat.reshape(h, b, d)
        if len(step) > len(self.segments):  # trailing global phase
            psi = psi * step[-1]
        return psi


class SequenceEngine:
    """Runs init + cell^T for batches of per-token angles; returns every state or the last one."""

    def __init__(self, cell: CellTemplate, init: QuantumCircuit | None = None, *,
                 dtype: str | torch.dtype = "complex64") -> None:
        self.dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        self.cell = CircuitProgram(cell.circuit, list(cell.inputs), list(cell.weights))
        self.init = CircuitProgram(init) if init is not None else None
        self.num_qubits = cell.circuit.num_qubits

    def initial_state(self, heads: int, batch: int, device=None) -> Tensor:
        """|0…0⟩ pushed through the init block: (H, B, D)."""
        d = 2**self.num_qubits
        psi = torch.zeros(heads, batch, d, dtype=self.dtype, device=device)
        psi[..., 0] = 1
        if self.init is not None:
            w = torch.zeros(heads, 0, dtype=_real(self.dtype), device=device)
            psi = self.init.step(psi, self.init.prepare(None, w, self.dtype))
        return psi

    def run(self, theta: Tensor, w: Tensor, psi0: Tensor | None = None, *,
            all_states: bool = True) -> Tensor:
        """States after each token. θ (H, B, T, m), w (H, P) -> (H, B, T, D), or (H, B, D) if not all."""
        h, b, t, m = theta.shape
        if m != self.cell.num_inputs or w.shape != (h, self.cell.num_weights):
            raise EngineError(f"expected θ (H, B, T, {self.cell.num_inputs}) and w "
                              f"(H, {self.cell.num_weights}), got {tuple(theta.shape)} and "
                              f"{tuple(w.shape)}")
        real = _real(self.dtype)
        theta, w = theta.to(real), w.to(real)
        psi = self.initial_state(h, b, theta.device) if psi0 is None else psi0.to(self.dtype)
        states = []
        for step in self.cell.slice(self.cell.prepare(theta, w, self.dtype), t):
            psi = self.cell.step(psi, step)
            if all_states:
                states.append(psi)
        return torch.stack(states, dim=2) if all_states else psi


class ReadoutEngine:
    """Expectations of K learned-basis queries: ⟨ψ| U_k† Z_S U_k |ψ⟩ for every term S."""

    def __init__(self, template: ReadoutTemplate, *, dtype: str | torch.dtype = "complex64") -> None:
        self.dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        self.template = template
        w = list(template.weights)
        self.queries = [CircuitProgram(qc, (), w) for qc in template.circuits]
        n = template.circuits[0].num_qubits
        idx = np.arange(2**n)
        signs = 1 - 2 * ((idx[:, None] >> np.arange(n)[None, :]) & 1)  # (D, n): ±1 per Z_q
        zmat = np.stack([signs[:, list(t)].prod(axis=1) for t in template.terms], axis=1)
        self._zmat = torch.as_tensor(zmat, dtype=torch.float64)  # (D, M)

    def rotations_t(self, r: Tensor) -> Tensor:
        """Transposed query unitaries (H, K, D, D) for readout weights r (H, 3nK)."""
        r = r.to(_real(self.dtype))
        return torch.stack([fixed_unitary_t(q.segments[0].gates, r, q.num_qubits, self.dtype)
                            for q in self.queries], dim=1)

    def __call__(self, states: Tensor, r: Tensor) -> Tensor:
        """States (H, ..., D) and weights r (H, 3nK) -> expectations (H, ..., K, M), real."""
        h, d = states.shape[0], states.shape[-1]
        lead = states.shape[1:-1]
        rot = self.rotations_t(r)  # (H, K, D, D)
        flat = states.reshape(h, 1, -1, d)  # (H, 1, N, D)
        amp = flat @ rot  # (H, K, N, D)
        prob = amp.real**2 + amp.imag**2  # (H, K, N, D)
        z = self._zmat.to(device=prob.device, dtype=prob.dtype)
        ev = prob @ z  # (H, K, N, M)
        return ev.permute(0, 2, 1, 3).reshape((h,) + lead + ev.shape[1:2] + ev.shape[3:])
