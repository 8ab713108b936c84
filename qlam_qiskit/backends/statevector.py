"""Exact, batched, differentiable statevector engine for QLAM templates (torch, CPU or CUDA).

Built from the Qiskit cell template. A (diagonal input, fixed mixing) cell runs on one of three
kernels: ``fused``, the numba CPU kernel on the cell's product form (``product.py``,
``kernels.py``: O(n·2^n) per token, adjoint backward); ``dense``, the mixing block fused into one
2^n×2^n unitary and one elementwise product plus one batched matmul per token (``scan.py``,
``adjoint.py``); ``product``, the product form gate by gate in torch. Other cells run segment by
segment. H independent memories (heads) run side by side. Tensors are time-major: inputs
θ (T, H, B, m), states (T, H, B, D), so every per-token slice is contiguous."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit

from ..circuits.cell import CellTemplate
from ..circuits.readout import ReadoutTemplate
from .gates import apply_matrix, gate_matrix
from .program import (EngineError, Segment, compile_gates, diag_patterns, fixed_unitary_t,
                      gate_angles, input_map, segment_gates)
from .phases import phases
from .adjoint import adjoint_scan
from . import kernels
from .product import product_form, product_scan_ref
from .scan import diag_unitary_scan

Tensor = torch.Tensor
KERNELS = ("auto", "fused", "dense", "product")
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
        # compile first: it refuses a parameterized global phase with an EngineError
        self.segments: list[Segment] = segment_gates(compile_gates(circuit, inputs, weights))
        self.global_phase = float(circuit.global_phase)
        self._patterns = {i: self._diag_tables(s) for i, s in enumerate(self.segments)
                          if s.kind == "diag"}

    def _diag_tables(self, seg: Segment) -> tuple:
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
                pat, qubits, local = self._patterns[i]
                d = phases(ang, pat.to(ang.device), qubits,
                           None if local is None else local.to(ang))  # (T, H, B, D)
                out.append(d * complex(np.cos(phase), np.sin(phase)) if phase else d)
                phase = 0.0
            else:
                out.append([(g, gate_angles(g, theta, w)) for g in seg.gates])
        if phase:
            raise EngineError("a global phase on a circuit with only non-diagonal input gates is "
                              "not supported; remove it (it does not change expectation values)")
        return out

    def diag_fixed_parts(self, w: Tensor, dtype: torch.dtype
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For a (diag, fixed) cell: input map A (G, m), weight offsets o (H, G) with the diagonal
        angles = θ @ Aᵀ + o, pattern (G, D), and Uᵀ (H, D, D) with the global phase folded in:
        what the adjoint scan rebuilds each token's phases from."""
        diag, fixed = self.segments
        a_in, off = input_map(diag.gates, w)  # (G, m), (H, G)
        pattern = self._patterns[0][0].to(device=w.device, dtype=w.dtype)  # (G, D)
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


def _unbind_time(prepared: list, kinds: list[str]) -> list:
    """Slice input tensors along time once (indexing per step makes backward O(T^2))."""
    out = []
    for kind, p in zip(kinds, prepared):
        if kind == "diag":
            p = p.unbind(0)
        elif kind == "gates":
            p = [(g, [a.unbind(0) for a in ang]) for g, ang in p]
        out.append(p)
    return out


class SequenceEngine:
    """Runs init + cell^T over batches of per-token angles, for H memories at once.

    ``kernel`` picks how a (diagonal input, fixed mixing) cell is scanned:

    * ``"fused"``: the numba CPU kernel on the cell's product form (``kernels.py``): O(n·2^n) per
      token, backward by unitary adjoint, memory independent of T for last-state runs;
    * ``"dense"``: the mixing block fused into one 2^n×2^n unitary, one batched matmul per token
      (the GPU path; last-state runs backpropagate by adjoint with ``adjoint=True``);
    * ``"product"``: the product form gate by gate in plain torch autograd (any device, wide memories);
    * ``"auto"`` (default): fused on CPU when the cell has a product form and numba is installed,
      product for 12+ qubits elsewhere, dense otherwise.
    Cells without a product form (CX entanglers, non-diagonal or two-qubit input gates) use dense.
    """

    def __init__(self, cell: CellTemplate, init: QuantumCircuit | None = None, *,
                 dtype: str | torch.dtype = "complex64", fast: bool = True,
                 adjoint: bool = False, anchor_every: int = 0, kernel: str = "auto") -> None:
        self.dtype = as_complex_dtype(dtype)
        self.fast = fast
        """Use a fused scan when the cell is (diagonal input block, fixed mixing block)."""
        self.adjoint = adjoint
        """Dense kernel, last-state runs: backpropagate by unitary adjoint (memory independent of T)."""
        self.anchor_every = anchor_every
        """Adjoint walks: keep every k-th state to bound round-off drift (0: none)."""
        if kernel not in KERNELS:
            raise EngineError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.cell = CircuitProgram(cell.circuit, list(cell.inputs), list(cell.weights))
        self.product = product_form(self.cell)
        if kernel in ("fused", "product") and self.product is None:
            raise EngineError(f"kernel={kernel!r} needs a cell in product form (diagonal one-qubit "
                              "input gates; one-qubit and diagonal mixing gates, e.g. cz or rzz "
                              "entanglers); use kernel='dense'")
        if kernel == "fused" and not kernels.available():
            raise EngineError("kernel='fused' needs numba: pip install numba")
        self.kernel = kernel
        self.init_gates = compile_gates(init, (), ()) if init is not None else []
        self.init_phase = float(init.global_phase) if init is not None else 0.0
        self.num_qubits = cell.circuit.num_qubits

    def kernel_for(self, device: torch.device) -> str:
        """The kernel a run on ``device`` uses: fused, product, dense, or steps (gate segments)."""
        if not self.fast or self.cell.kinds != ["diag", "fixed"]:
            return "steps"
        if self.kernel == "fused" and device.type != "cpu":
            raise EngineError(f"kernel='fused' runs on the CPU; on {device.type} use "
                              "kernel='dense' (or 'product' for wide memories)")
        if self.kernel != "auto":
            return self.kernel
        if self.product is None:
            return "dense"
        if device.type == "cpu" and kernels.available():
            return "fused"
        return "product" if self.num_qubits >= 12 else "dense"

    def initial_state(self, heads: int, batch: int, device=None) -> Tensor:
        """|0…0⟩ pushed through the init block gate by gate (no 2^n×2^n matrix): (H, B, D)."""
        psi = torch.zeros(1, 2**self.num_qubits, dtype=self.dtype, device=device)
        psi[:, 0] = 1
        for g in self.init_gates:
            psi = apply_matrix(psi, gate_matrix(g.name, (), dtype=self.dtype, device=device),
                               g.qubits, self.num_qubits)
        if self.init_phase:
            psi = psi * complex(np.cos(self.init_phase), np.sin(self.init_phase))
        return psi.expand(heads * batch, -1).reshape(heads, batch, -1).clone()

    def run(self, theta: Tensor, w: Tensor, psi0: Tensor | None = None, *,
            all_states: bool = True) -> Tensor:
        """θ (T, H, B, m), w (H, P) -> states after each token (T, H, B, D), or the last (H, B, D)."""
        if theta.dim() != 4 or theta.shape[-1] != self.cell.num_inputs \
                or w.shape != (theta.shape[1], self.cell.num_weights):
            raise EngineError(f"expected θ (T, H, B, {self.cell.num_inputs}) and w "
                              f"(H, {self.cell.num_weights}), got {tuple(theta.shape)} and "
                              f"{tuple(w.shape)}")
        t, h, b, _ = theta.shape
        real = real_dtype(self.dtype)
        theta, w = theta.to(real), w.to(real)
        psi = self.initial_state(h, b, theta.device) if psi0 is None else psi0.to(self.dtype)
        kernel = self.kernel_for(theta.device)
        if kernel in ("fused", "product"):
            ins = self.product.inputs(w)  # A (G, m), o (H, G), qubits (G,), phases (G, 2)
            u, e = self.product.unitaries(w, self.dtype)  # (H, L, n, 2, 2), (H, L, D)
            if kernel == "fused":
                return kernels.product_scan(psi, theta, *ins, u, e, all_states=all_states,
                                            anchor_every=self.anchor_every)
            return product_scan_ref(psi, theta, *ins, u, e, all_states=all_states)
        if kernel == "dense" and self.adjoint and not all_states:
            a_in, off, pattern, mt = self.cell.diag_fixed_parts(w, self.dtype)
            return adjoint_scan(psi, theta, a_in, off, pattern, mt,
                                anchor_every=self.anchor_every)
        prep = self.cell.prepare(theta, w, self.dtype)
        if kernel == "dense":
            states = diag_unitary_scan(psi, prep[0], prep[1])  # (T, H, B, D)
            return states if all_states else states[-1]
        sliced = _unbind_time(prep, self.cell.kinds)
        states = []
        for k in range(t):
            psi = self.cell.step(psi, sliced, k)
            if all_states:
                states.append(psi)
        return torch.stack(states) if all_states else psi

    def step(self, theta_t: Tensor, w: Tensor, psi: Tensor) -> Tensor:
        """One token for streaming: θ_t (H, B, m), w (H, P), ψ (H, B, D) -> next ψ (H, B, D)."""
        return self.run(theta_t.unsqueeze(0), w, psi, all_states=False)


class ReadoutEngine:
    """Expectations of K learned-basis queries: ⟨ψ| U_k† Z_S U_k |ψ⟩ for every Z term S.

    Up to 9 qubits: in real arithmetic, as plain float GEMMs: [Re ψ, Im ψ] times the real form
    of all K rotations at once, squared, then one matmul with the ±1 sign table of the terms.
    From 10 qubits (or ``gatewise=True``) each query's one-qubit rotations are applied gate by
    gate instead, so no 2^n×2^n rotation is built.
    """

    def __init__(self, template: ReadoutTemplate, *, dtype: str | torch.dtype = "complex64",
                 gatewise: bool | None = None) -> None:
        self.dtype = as_complex_dtype(dtype)
        self.template = template
        w = list(template.weights)
        self.queries = [CircuitProgram(qc, (), w) for qc in template.circuits]
        n = template.circuits[0].num_qubits
        self.gatewise = n >= 10 if gatewise is None else gatewise
        """Apply query rotations gate by gate (wide memories) instead of as dense matrices."""
        idx = np.arange(2**n)
        signs = 1 - 2 * ((idx[:, None] >> np.arange(n)[None, :]) & 1)  # (D, n): ±1 per Z_q
        zmat = np.stack([signs[:, list(t)].prod(axis=1) for t in template.terms], axis=1)
        self._z = torch.as_tensor(zmat, dtype=torch.float64)  # (D, M)
        if not self.gatewise:  # (K*2D, K*M): |amp|² (re and im rows) of query k -> its M terms
            z2 = np.kron(np.eye(template.num_queries), np.repeat(zmat, 2, axis=0))
            self._z2 = torch.as_tensor(z2, dtype=torch.float64)

    def rotations_t(self, r: Tensor) -> Tensor:
        """Transposed query unitaries (H, K, D, D) for readout weights r (H, 3nK)."""
        r = r.to(real_dtype(self.dtype))
        return torch.stack([fixed_unitary_t(q.segments[0].gates, r, q.num_qubits, self.dtype)
                            for q in self.queries], dim=1)

    def __call__(self, states: Tensor, r: Tensor) -> Tensor:
        """States (..., H, B, D) and weights r (H, 3nK) -> expectations (..., H, B, K, M), real."""
        if self.gatewise:
            return self._gatewise(states, r)
        h, b, d = states.shape[-3:]
        lead = states.shape[:-3]
        rot = self.rotations_t(r)  # (H, K, D, D) complex, amp_k = ψ @ rot[k]
        k = rot.shape[1]
        # real form: [re ψ_j, im ψ_j] interleaved rows -> [re a_i, im a_i] interleaved columns
        c, s = rot.real, rot.imag  # (H, K, D, D)
        blk = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (H,K,D,D,2,2)
        rr = blk.permute(0, 2, 4, 1, 3, 5).reshape(h, 2 * d, k * 2 * d)  # (H, 2D, K*2D)
        x = torch.view_as_real(states.to(self.dtype))  # (..., H, B, D, 2)
        x = x.reshape(-1, h, b, 2 * d).transpose(0, 1).reshape(h, -1, 2 * d)  # (H, N, 2D)
        amp = torch.bmm(x, rr)  # (H, N, K*2D)
        ev = (amp * amp) @ self._z2.to(device=amp.device, dtype=amp.dtype)  # (H, N, K*M)
        ev = ev.reshape(h, -1, b, k, ev.shape[-1] // k).transpose(0, 1)  # (L, H, B, K, M)
        return ev.reshape(lead + (h, b, k, ev.shape[-1]))

    def _gatewise(self, states: Tensor, r: Tensor) -> Tensor:
        """Same expectations, each query's U gates applied one qubit at a time."""
        h, b, d = states.shape[-3:]
        lead = states.shape[:-3]
        n = d.bit_length() - 1
        r = r.to(real_dtype(self.dtype))
        x = states.to(self.dtype).reshape(-1, h, b, d)  # (L, H, B, D)
        z = self._z.to(device=x.device, dtype=r.dtype)
        out = []
        for q in self.queries:
            amp = x.reshape(-1, d)  # (L*H*B, D), head-major inside each leading index
            for g in q.segments[0].gates:
                mat = gate_matrix(g.name, gate_angles(g, None, r), dtype=self.dtype,
                                  device=x.device)  # (H, 2, 2)
                mat = mat[None, :, None].expand(x.shape[0], h, b, 2, 2).reshape(-1, 2, 2)
                amp = apply_matrix(amp, mat, g.qubits, n)
            out.append((amp.real ** 2 + amp.imag ** 2) @ z)  # (L*H*B, M)
        ev = torch.stack(out, -2)  # (L*H*B, K, M)
        return ev.reshape(lead + (h, b) + ev.shape[-2:])
